"""kill -9 in the middle of an upload: after a restart the store is consistent, the partial
model invisible, and everything committed before is intact and servable."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import tritonclient.grpc as tc

from pareto.v1 import common_pb2, models_pb2
from pareto_cli.client import ParetoClient
from service.store.sqlite_repository import SqliteRepository


def start_server(data_dir: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pareto_cli.main",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--metrics-port",
            "0",
            "--data-dir",
            str(data_dir),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"PARETO_MEASURE_MEMORY": "false"},
    )
    for line in process.stderr:
        if match := re.search(r"listening on 127\.0\.0\.1:(\d+)", line):
            threading.Thread(target=process.stderr.read, daemon=True).start()  # drain
            return process, f"127.0.0.1:{match.group(1)}"
    raise AssertionError(f"server did not start (exit {process.wait()})")


def stalled_upload(
    payload: bytes, sent: threading.Event
) -> Iterator[models_pb2.UploadModelRequest]:
    header = models_pb2.UploadHeader(
        name="partial",
        format=common_pb2.MODEL_FORMAT_ONNX,
        size_bytes=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
    )
    yield models_pb2.UploadModelRequest(header=header)
    yield models_pb2.UploadModelRequest(chunk=payload[: len(payload) // 2])
    sent.set()
    time.sleep(30)  # never finishes: the server is killed meanwhile


def staged_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in (data_dir / "tmp").rglob("*") if p.is_file())


def test_sigkill_mid_upload_leaves_store_consistent(tmp_path, digits_model):
    data_dir = tmp_path / "data"
    process, address = start_server(data_dir)
    try:
        with ParetoClient(address) as client:
            client.upload(digits_model.path, "committed")
            sent = threading.Event()
            payload = Path(digits_model.path).read_bytes()
            call = client.models.UploadModel.future(stalled_upload(payload, sent))
            assert sent.wait(10)
            deadline = time.monotonic() + 10
            while staged_bytes(data_dir) == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert staged_bytes(data_dir) > 0, "the upload never reached the staging area"
            process.send_signal(signal.SIGKILL)
            process.wait()
            assert call.exception() is not None
    finally:
        process.kill()

    process, address = start_server(data_dir)
    try:
        assert staged_bytes(data_dir) == 0
        with ParetoClient(address) as client:
            assert [m.name for m in client.list_models()] == ["committed"]
            try:
                client.get_model("partial")
                raise AssertionError("partial upload is visible")
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND
        triton = tc.InferenceServerClient(address)
        tensor = tc.InferInput("pixels", [1, 1, 8, 8], "FP32")
        tensor.set_data_from_numpy(digits_model.X_test[:1].astype(np.float32))
        assert triton.infer("committed", [tensor]).as_numpy("logits").shape == (1, 10)
        triton.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    repo = SqliteRepository(data_dir / "metadata.db")
    referenced = repo.referenced_blobs()
    repo.close()
    on_disk = {p.name for p in (data_dir / "blobs").rglob("*") if p.is_file()}
    assert on_disk == referenced
