"""A real gateway on ephemeral loopback ports, with a fresh data dir per test, and the
clients of it; a local Ray cluster per module for the Ray tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as tc

from pareto_cli.client import ParetoClient
from service.server import GatewayServer
from tests.helpers.gateway_settings import make_settings
from tests.helpers.ray_cluster import RayHead, ray_env, running_ray


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


@pytest.fixture
def quiet_gateway(tmp_path: Path) -> Iterator[GatewayServer]:
    """A real gateway without the memory probe (for tests that build or train)."""
    server = GatewayServer(make_settings(tmp_path / "data", measure_memory=False))
    server.start()
    yield server
    server.stop(grace=1.0)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayHead]:
    """A local Ray cluster for the module's tests (started once per module that asks)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ray_env().items():  # for the job drivers the gateway starts
            patch.setenv(name, value)
        yield from running_ray()
