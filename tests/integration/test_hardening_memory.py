"""Memory is bounded per request and returned after peaks: a large request leaves the
server where it was, one too large for the inference memory is refused alone, inputs over
PARETO_MAX_REQUEST_BYTES are refused, and model loads never start more memory probes at
once than PARETO_MAX_HELPER_PROCESSES."""

from __future__ import annotations

import os
import threading
import time
from concurrent import futures
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tc
from tritonclient.utils import InferenceServerException

from examples.models import MINILM_INPUTS
from pareto_cli.client import ParetoClient
from service.server import GatewayServer
from tests.helpers.gateway_settings import make_settings
from tests.helpers.serve_process import rss_bytes, serve
from tests.helpers.tiny_model import write_tiny_model

MiB = 1024 * 1024
# What a finished request may leave behind in the server (allocator caches, Python objects).
RSS_SLACK = 150 * MiB


def _minilm_inputs(batch: int, seq: int) -> list[tc.InferInput]:
    inputs = []
    for name in MINILM_INPUTS:
        tensor = tc.InferInput(name, [batch, seq], "INT64")
        tensor.set_data_from_numpy(np.ones((batch, seq), np.int64))
        inputs.append(tensor)
    return inputs


def test_a_large_request_returns_its_memory_and_a_huge_one_is_refused(tmp_path, minilm_model):
    served = serve(tmp_path / "data", {"PARETO_INFERENCE_MEMORY_BYTES": str(1024 * MiB)})
    try:
        with ParetoClient(served.address) as client:
            client.upload(minilm_model.path, "minilm")
        triton = tc.InferenceServerClient(served.address)
        triton.infer("minilm", _minilm_inputs(1, 16))  # loaded and warm
        before = rss_bytes(served.process.pid)

        triton.infer("minilm", _minilm_inputs(32, 256))  # ~0.5 GB of activations
        assert rss_bytes(served.process.pid) - before < RSS_SLACK

        # Attention scores alone would take 3 GiB: over the 1 GiB it may use.
        with pytest.raises(InferenceServerException) as refused:
            triton.infer("minilm", _minilm_inputs(256, 512))
        assert "RESOURCE_EXHAUSTED" in str(refused.value.status())
        assert "PARETO_INFERENCE_MEMORY_BYTES" in refused.value.message()
        assert rss_bytes(served.process.pid) - before < RSS_SLACK
        assert triton.infer("minilm", _minilm_inputs(1, 16)).as_numpy("embedding").shape == (
            1,
            384,
        )
        triton.close()
    finally:
        served.process.terminate()
        served.process.wait(timeout=30)


def test_inputs_over_the_request_limit_are_refused_and_others_still_served(tmp_path):
    gateway = GatewayServer(make_settings(tmp_path / "data", max_request_bytes=1 * MiB))
    gateway.start()
    try:
        address = f"127.0.0.1:{gateway.port}"
        with ParetoClient(address) as client:
            client.upload(write_tiny_model(tmp_path / "tiny.onnx"), "tiny")
        triton = tc.InferenceServerClient(address)

        def infer(rows: int):
            x = tc.InferInput("x", [rows, 4], "FP32")
            x.set_data_from_numpy(np.ones((rows, 4), np.float32))
            n = tc.InferInput("n", [rows, 4], "INT64")
            n.set_data_from_numpy(np.ones((rows, 4), np.int64))
            return triton.infer("tiny", [x, n])

        with futures.ThreadPoolExecutor(3) as pool:  # three at once, as in the finding
            calls = [pool.submit(infer, 200_000) for _ in range(3)]  # 9.6 MB each
            for call in calls:
                with pytest.raises(InferenceServerException) as refused:
                    call.result()
                assert "RESOURCE_EXHAUSTED" in str(refused.value.status())
                assert "PARETO_MAX_REQUEST_BYTES" in refused.value.message()
        assert infer(2).as_numpy("y").shape == (2, 2)
        triton.close()
    finally:
        gateway.stop(grace=1.0)


def _probes_running() -> int:
    """Memory probes started by this process (the in-process gateway), not by others."""
    count = 0
    for process in Path("/proc").glob("[0-9]*"):
        try:
            parent = int((process / "stat").read_text().rpartition(")")[2].split()[1])
            if (
                parent == os.getpid()
                and b"runtimes.memory_probe" in (process / "cmdline").read_bytes()
            ):
                count += 1
        except (OSError, ValueError, IndexError):
            continue
    return count


def test_loading_many_models_at_once_runs_at_most_the_allowed_probes(tmp_path):
    gateway = GatewayServer(make_settings(tmp_path / "data", max_helper_processes=2))
    gateway.start()
    most, done = 0, threading.Event()

    def watch() -> None:
        nonlocal most
        while not done.is_set():
            most = max(most, _probes_running())
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    try:
        address = f"127.0.0.1:{gateway.port}"
        model = write_tiny_model(tmp_path / "tiny.onnx")
        with ParetoClient(address) as client:
            for i in range(8):
                client.upload(model, f"tiny-{i}")
        watcher.start()
        triton = tc.InferenceServerClient(address)
        with futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: triton.load_model(f"tiny-{i}"), range(8)))
        deadline = time.monotonic() + 120
        while _probes_running() or not _all_measured(gateway, 8):
            assert time.monotonic() < deadline, "memory probes did not finish"
            time.sleep(0.1)
        assert 1 <= most <= 2
        triton.close()
    finally:
        done.set()
        if watcher.is_alive():
            watcher.join()
        gateway.stop(grace=1.0)


def _all_measured(gateway: GatewayServer, count: int) -> bool:
    from service import metrics

    measured = [
        m
        for m in gateway.sessions.loaded()
        if metrics.MODEL_MEMORY.labels(*m.labels)._value.get() > 0
    ]
    return len(measured) >= count
