"""kill -9 of a real `pareto serve` in the middle of an upload, and while traffic updates
stream in: after a restart the store is consistent (SQLite integrity_check), nothing
partial is visible, and everything committed before is intact and servable."""

from __future__ import annotations

import hashlib
import random
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import tritonclient.grpc as tc

from pareto.v1 import common_pb2, models_pb2
from pareto.v1 import deployments_pb2 as dpb
from pareto.v1 import deployments_pb2_grpc as dpb_grpc
from pareto_cli.client import ParetoClient
from service.store.sqlite_repository import SqliteRepository
from tests.helpers.serve_process import start_server


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


# -- SIGKILL during UpdateTraffic ----------------------------------------------------------

ENDPOINT = "ab"


def split(index: int) -> dict[str, float]:
    """The weights of the `index`-th update: a new split each time (consecutive ones
    differ, 0 and 100 included), so a restored split says which update it came from."""
    share = float(index * 37 % 101)
    return {"1": share, "2": 100.0 - share}


def weights_of(deployment: dpb.Deployment) -> dict[str, float]:
    return {t.name: t.weight for t in deployment.targets}


class TrafficUpdates(threading.Thread):
    """UpdateTraffic on ENDPOINT in a loop, one call at a time, until a call fails (the
    server is killed). `attempted` is the split of the last call sent, `acked` the replies
    of the calls that succeeded."""

    def __init__(self, address: str, first_index: int) -> None:
        super().__init__(daemon=True)
        self.address = address
        self.index = first_index
        self.attempted: dict[str, float] | None = None
        self.acked: list[dpb.Deployment] = []
        self.failure: grpc.RpcError | None = None
        self.first_ack = threading.Event()

    def run(self) -> None:
        with grpc.insecure_channel(self.address) as channel:
            update = dpb_grpc.DeploymentServiceStub(channel).UpdateTraffic
            while True:
                self.attempted = split(self.index)
                request = dpb.UpdateTrafficRequest(name=ENDPOINT, weights=self.attempted)
                try:
                    self.acked.append(update(request, timeout=10))
                except grpc.RpcError as exc:
                    self.failure = exc
                    return
                self.first_ack.set()
                self.index += 1


def check_serves(address: str, deployment: dpb.Deployment, x: np.ndarray) -> None:
    """Inference on the endpoint answers, only from targets with traffic; both targets
    answer when pinned."""
    triton = tc.InferenceServerClient(address)
    try:
        tensor = tc.InferInput("pixels", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x.astype(np.float32))
        live = {f"v{name}" for name, weight in weights_of(deployment).items() if weight > 0}
        for version in ("", "", "", "", "", "1", "2"):
            result = triton.infer(ENDPOINT, [tensor], model_version=version)
            assert result.as_numpy("logits").shape == (1, 10)
            answered = result.get_response().parameters["pareto_variant"].string_param
            assert answered == f"v{version}" if version else answered in live, answered
    finally:
        triton.close()


def check_database(data_dir: Path, deployment: dpb.Deployment) -> None:
    """integrity_check passes and the one deployment row holds `deployment`'s revision."""
    db = sqlite3.connect(data_dir / "metadata.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = db.execute("SELECT name, revision FROM deployments").fetchall()
        assert rows == [(ENDPOINT, deployment.revision)]
    finally:
        db.close()


def test_sigkill_during_traffic_updates_keeps_every_acknowledged_split(tmp_path, digits_model):
    """Three kills at seeded random moments of a stream of UpdateTraffic calls. The store
    commits (WAL, synchronous=FULL) before the reply is sent, so after each restart the
    split is the last acknowledged one, or the one update in flight at the kill if it
    committed just before (revision + 1); never a mix, and the revision matches it."""
    rng = random.Random(8)
    data_dir = tmp_path / "data"
    x = digits_model.X_test[:1]
    outcomes = []
    process, address = start_server(data_dir)
    try:
        with ParetoClient(address) as client:
            client.upload(digits_model.path, "digits")
            client.upload(digits_model.path, "digits", new_version=True)
            known = client.deployments.CreateDeployment(
                dpb.CreateDeploymentRequest(
                    name=ENDPOINT,
                    model="digits",
                    targets=[
                        dpb.Target(model_version="1", weight=50),
                        dpb.Target(model_version="2", weight=50),
                    ],
                )
            )
        index = 0
        for _ in range(3):
            updates = TrafficUpdates(address, index)
            updates.start()
            assert updates.first_ack.wait(10), "no UpdateTraffic succeeded"
            time.sleep(rng.uniform(0.0, 0.5))
            process.send_signal(signal.SIGKILL)
            process.wait()
            updates.join(15)
            assert not updates.is_alive()
            assert updates.failure is not None
            assert updates.failure.code() == grpc.StatusCode.UNAVAILABLE, updates.failure
            acked = updates.acked
            assert [a.revision for a in acked] == [
                known.revision + 1 + i for i in range(len(acked))
            ]
            assert [weights_of(a) for a in acked] == [split(index + i) for i in range(len(acked))]
            last = acked[-1]

            process, address = start_server(data_dir)
            with ParetoClient(address) as client:
                restored = client.deployments.GetDeployment(dpb.GetDeploymentRequest(name=ENDPOINT))
            if restored.revision == last.revision:
                assert restored == last
                outcomes.append("last acknowledged")
            else:  # the update in flight committed; only its reply was lost
                assert restored.revision == last.revision + 1
                assert weights_of(restored) == updates.attempted
                expected = dpb.Deployment()
                expected.CopyFrom(last)
                expected.revision = restored.revision
                for target in expected.targets:
                    target.weight = updates.attempted[target.name]
                expected.updated_at.CopyFrom(restored.updated_at)
                assert restored == expected
                assert restored.updated_at.ToNanoseconds() >= last.updated_at.ToNanoseconds()
                outcomes.append("in flight, committed")
            check_serves(address, restored, x)
            check_database(data_dir, restored)
            known = restored
            index = updates.index + 1
    except BaseException:
        process.kill()
        raise
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    check_database(data_dir, known)
    print("restored after each kill:", outcomes)
