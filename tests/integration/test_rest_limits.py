"""The REST port under limits: PARETO_MAX_INFLIGHT_REQUESTS counts REST and gRPC inference
together (429 and RESOURCE_EXHAUSTED past it), and on shutdown the REST port turns not
ready, lets the request in flight finish, and stops taking requests with gRPC."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tc
from tritonclient.utils import InferenceServerException

from pareto_cli.client import ParetoClient
from service.server import GatewayServer
from tests.helpers.gateway_settings import make_settings
from tests.helpers.rest import curl, curl_exit_code, http_client, http_infer
from tests.helpers.slow_model import expected, rows, write_slow_model

SLOW_ROWS = 16384  # about a second per request on one core of the dev VM


def wait_until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def rest_infer(port: int, x: np.ndarray) -> np.ndarray:
    client = http_client(port, network_timeout=300.0)
    try:
        return http_infer(client, "slow", {"x": x}, binary=True).as_numpy("y")
    finally:
        client.close()


def grpc_infer(port: int, x: np.ndarray) -> np.ndarray:
    client = tc.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        tensor = tc.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        return client.infer("slow", [tensor], client_timeout=300.0).as_numpy("y")
    finally:
        client.close()


def start(root: Path, **settings: object) -> GatewayServer:
    gateway = GatewayServer(make_settings(root / "data", measure_memory=False, **settings))
    gateway.start()
    with ParetoClient(f"127.0.0.1:{gateway.port}") as client:
        client.upload(write_slow_model(root / "slow.onnx"), "slow")
    rest_infer(gateway.http_port, rows(1))  # loaded: what follows only runs the model
    return gateway


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[GatewayServer]:
    gateway = start(tmp_path, max_inflight_requests=2)
    yield gateway
    gateway.stop(grace=60.0)


def test_rest_and_grpc_share_the_inflight_limit(limited):
    gateway = limited
    with ThreadPoolExecutor(2) as pool:
        slow = [
            pool.submit(rest_infer, gateway.http_port, rows(SLOW_ROWS, 1)),
            pool.submit(grpc_infer, gateway.port, rows(SLOW_ROWS, 2)),
        ]
        wait_until(lambda: gateway._limiter.in_flight == 2)
        with pytest.raises(InferenceServerException) as rest_err:
            rest_infer(gateway.http_port, rows(1))
        with pytest.raises(InferenceServerException) as grpc_err:
            grpc_infer(gateway.port, rows(1))
        assert not all(f.done() for f in slow), "requests too fast for this test"
        assert rest_err.value.status() == "429"
        assert "PARETO_MAX_INFLIGHT_REQUESTS" in rest_err.value.message()
        assert grpc_err.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        for future, seed in zip(slow, (1, 2), strict=True):
            np.testing.assert_array_equal(future.result(), expected(rows(SLOW_ROWS, seed)))
    wait_until(lambda: gateway._limiter.in_flight == 0)
    x = rows(3)
    np.testing.assert_array_equal(rest_infer(gateway.http_port, x), expected(x))
    assert curl(f"http://127.0.0.1:{gateway.http_port}/v2/health/live").status == 200


def test_shutdown_turns_not_ready_finishes_in_flight_then_closes(tmp_path):
    gateway = start(tmp_path)
    ready = f"http://127.0.0.1:{gateway.http_port}/v2/health/ready"
    x = rows(SLOW_ROWS, 5)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(rest_infer, gateway.http_port, x)
        wait_until(lambda: gateway._limiter.in_flight == 1)
        stopping = threading.Thread(target=gateway.stop, kwargs={"grace": 120.0, "delay": 3.0})
        stopping.start()
        try:
            wait_until(lambda: not gateway._ready.is_set())
            assert curl(ready).status == 503  # during the delay: answering, not ready
            np.testing.assert_array_equal(running.result(), expected(x))
        finally:
            stopping.join()
    assert curl_exit_code(ready) == 7  # connection refused: the port is closed
