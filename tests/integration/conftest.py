"""A real gateway on ephemeral loopback ports, with a fresh data dir per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as tc

from pareto_cli.client import ParetoClient
from service.server import GatewayServer
from service.settings import Settings

# Same ONNX Runtime options on both sides of every comparison with a direct session.
ORT_OPTIONS = {"intra_op_threads": 1, "inter_op_threads": 1, "graph_optimization_level": "all"}


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 0,
        "metrics_port": 0,
        "data_dir": data_dir,
        "ort_intra_op_threads": ORT_OPTIONS["intra_op_threads"],
        "ort_inter_op_threads": ORT_OPTIONS["inter_op_threads"],
        "grpc_workers": 8,
    }
    return Settings(**(values | overrides))


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayServer]:
    server = GatewayServer(make_settings(tmp_path / "data"))
    server.start()
    yield server
    server.stop(grace=1.0)


@pytest.fixture
def address(gateway: GatewayServer) -> str:
    return f"127.0.0.1:{gateway.port}"


@pytest.fixture
def client(address: str) -> Iterator[ParetoClient]:
    with ParetoClient(address) as c:
        yield c


@pytest.fixture
def triton(address: str) -> Iterator[tc.InferenceServerClient]:
    c = tc.InferenceServerClient(address)
    yield c
    c.close()
