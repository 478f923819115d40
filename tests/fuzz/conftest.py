"""One real gateway on loopback for all fuzz tests (tests/helpers/fuzz.py has the rest).

The server is session-scoped (hypothesis runs many examples per test function, so a
function-scoped server would be wrong anyway). Its job scheduler is stopped right after
start: recipes are fuzzed at the CreateJob boundary, and a valid one stays QUEUED
instead of spending the machine's two cores on compression. At the end of the run the
number of fuzz cases and their status codes are printed ("fuzz cases: N") and written as
JSON to $PARETO_FUZZ_REPORT when set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2_grpc as kserve_grpc

from pareto_cli.client import ParetoClient
from pareto_cli.connection import Connection
from pareto_cli.datasets import upload_dataset
from service.server import GatewayServer
from tests.helpers.fuzz import DATASET, MAX_MESSAGE_BYTES, MAX_MODEL_BYTES, MODEL, TALLY, Fuzzed
from tests.helpers.gateway_settings import make_settings
from tests.helpers.tiny_model import tiny_model_bytes, upload_messages


@pytest.fixture(scope="session")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    root = tmp_path_factory.mktemp("fuzz")
    gateway = GatewayServer(
        make_settings(
            root / "data",
            grpc_max_message_bytes=MAX_MESSAGE_BYTES,
            max_model_bytes=MAX_MODEL_BYTES,
            measure_memory=False,
        )
    )
    gateway.start()
    gateway.scheduler.stop(grace=0)  # see the module docstring
    address = f"127.0.0.1:{gateway.port}"
    channel = grpc.insecure_channel(address)
    with ParetoClient(address, connection=Connection()) as client:
        client.models.UploadModel(iter(upload_messages(MODEL, tiny_model_bytes())))
        upload_dataset(client, _dataset_file(root), DATASET)
        yield Fuzzed(gateway, address, client, kserve_grpc.GRPCInferenceServiceStub(channel))
    channel.close()
    gateway.stop(grace=1.0)


def _dataset_file(root: Path) -> Path:
    path = root / "tiny.npz"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    np.savez(path, x=x, n=np.ones((8, 4), np.int64))
    return path


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TALLY:
        return
    total = sum(sum(c.values()) for c in TALLY.values())
    terminalreporter.section(f"fuzz cases: {total}")
    for what, codes in sorted(TALLY.items()):
        line = ", ".join(f"{code} {n}" for code, n in codes.most_common())
        terminalreporter.write_line(f"{what}: {sum(codes.values())} ({line})")
    report = os.environ.get("PARETO_FUZZ_REPORT")
    if report:
        data = {what: dict(codes) for what, codes in TALLY.items()}
        Path(report).write_text(json.dumps({"total": total, "cases": data}, indent=2))
