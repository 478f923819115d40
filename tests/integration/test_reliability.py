"""Reliability under load: SIGTERM drains in-flight requests of a real `pareto serve`
process (all complete with OK, exit 0), and inference past PARETO_MAX_INFLIGHT_REQUESTS
is answered RESOURCE_EXHAUSTED at once (and counted) instead of queueing; places of calls
given up while queued come back."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tc
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from bench.common import GatewayProcess
from pareto.v1 import models_pb2
from pareto_cli.client import ParetoClient
from service.server import GatewayServer
from tests.helpers.gateway_settings import make_settings
from tests.helpers.slow_model import expected, rows, write_slow_model

SLOW_ROWS = 16384  # about a second per request on one core of the dev VM


def infer(address: str, x: np.ndarray, timeout_s: float = 120.0) -> np.ndarray:
    client = tc.InferenceServerClient(address)
    try:
        tensor = tc.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer("slow", [tensor], client_timeout=timeout_s)
        return result.as_numpy("y")
    finally:
        client.close()


def wait_until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def scrape(url: str, name: str) -> float:
    """Sum of the samples called `name` on a /metrics page."""
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def test_sigterm_drains_in_flight_requests_then_exits_0(tmp_path: Path) -> None:
    env = {
        "PARETO_MEASURE_MEMORY": "false",
        "PARETO_ORT_INTRA_OP_THREADS": "1",
        "PARETO_SHUTDOWN_GRACE_S": "120",  # CI machines are slow; never cut a request short
    }
    gateway = GatewayProcess(tmp_path / "data", tmp_path / "serve.log", env)
    gateway.start()
    try:
        with ParetoClient(gateway.address) as client:
            client.upload(write_slow_model(tmp_path / "slow.onnx"), "slow")
        infer(gateway.address, rows(1))  # loaded: what follows only runs the model
        inputs = [rows(SLOW_ROWS, seed) for seed in range(4)]
        with ThreadPoolExecutor(len(inputs)) as pool:
            calls = [pool.submit(infer, gateway.address, x) for x in inputs]
            # All four are past decoding, inside the runtime, when SIGTERM arrives.
            count = "pareto_inference_queue_duration_seconds_count"
            wait_until(lambda: scrape(gateway.metrics_url, count) >= 1 + len(inputs))
            assert not any(call.done() for call in calls), "requests too fast for this test"
            exit_code = gateway.stop(timeout=180)
            outputs = [call.result() for call in calls]  # raises unless all were OK
    finally:
        gateway.stop()
    assert exit_code == 0, gateway.log_tail()
    for x, y in zip(inputs, outputs, strict=True):
        np.testing.assert_array_equal(y, expected(x))
    assert "pareto stopped" in gateway.log_path.read_text()


@contextmanager
def saturated_cpu() -> Iterator[None]:
    """Other processes keeping every core busy, as on a shared CI machine."""
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 2)
    ]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def test_sigterm_drains_running_and_queued_batches_under_cpu_load(tmp_path: Path) -> None:
    env = {
        "PARETO_MEASURE_MEMORY": "false",
        "PARETO_ORT_INTRA_OP_THREADS": "1",
        "PARETO_SHUTDOWN_GRACE_S": "300",  # a saturated CPU is slow; never cut one short
    }
    gateway = GatewayProcess(tmp_path / "data", tmp_path / "serve.log", env)
    gateway.start()
    try:
        with ParetoClient(gateway.address) as client:
            client.upload(write_slow_model(tmp_path / "slow.onnx"), "slow")
            batching = models_pb2.BatchingConfig(max_batch_size=4096, max_queue_size=64)
            config = models_pb2.ServingConfig(batching=batching)
            request = models_pb2.SetServingConfigRequest(name="slow", config=config)
            client.models.SetServingConfig(request)
        infer(gateway.address, rows(1))
        inputs = [rows(2048, seed) for seed in range(6)]
        with saturated_cpu(), ThreadPoolExecutor(len(inputs)) as pool:
            calls = [pool.submit(infer, gateway.address, x, 600.0) for x in inputs]
            started = "pareto_inference_queue_duration_seconds_count"
            wait_until(lambda: scrape(gateway.metrics_url, started) >= 2, 300)
            assert not all(call.done() for call in calls), "requests too fast for this test"
            exit_code = gateway.stop(timeout=600)
            outputs = [call.result() for call in calls]  # raises unless all were OK
    finally:
        gateway.stop()
    assert exit_code == 0, gateway.log_tail()
    for x, y in zip(inputs, outputs, strict=True):
        np.testing.assert_array_equal(y, expected(x))


@pytest.fixture
def limited(tmp_path: Path):
    settings = make_settings(tmp_path / "data", max_inflight_requests=2, measure_memory=False)
    server = GatewayServer(settings)
    server.start()
    address = f"127.0.0.1:{server.port}"
    with ParetoClient(address) as client:
        client.upload(write_slow_model(tmp_path / "slow.onnx"), "slow")
    infer(address, rows(1))  # loaded: what follows only runs the model
    yield server, address
    server.stop(grace=30.0)


def rejected() -> float:
    return (
        REGISTRY.get_sample_value("pareto_inference_rejected_total", {"reason": "max_inflight"})
        or 0.0
    )


def test_inference_past_the_limit_is_resource_exhausted_and_counted(limited) -> None:
    server, address = limited
    before = rejected()
    with ThreadPoolExecutor(2) as pool:
        slow: list[Future] = [pool.submit(infer, address, rows(SLOW_ROWS, s)) for s in (1, 2)]
        wait_until(lambda: server._limiter.in_flight == 2)
        assert REGISTRY.get_sample_value("pareto_inference_in_flight") == 2
        with pytest.raises(InferenceServerException) as err:
            infer(address, rows(1))
        assert not all(f.done() for f in slow), "requests too fast for this test"
        assert err.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        assert "PARETO_MAX_INFLIGHT_REQUESTS" in err.value.message()
        assert rejected() == before + 1
        for future, seed in zip(slow, (1, 2), strict=True):
            np.testing.assert_array_equal(future.result(), expected(rows(SLOW_ROWS, seed)))
    wait_until(lambda: server._limiter.in_flight == 0)
    x = rows(3)
    np.testing.assert_array_equal(infer(address, x), expected(x))  # admitted again
    assert rejected() == before + 1


def test_management_calls_are_not_limited(limited) -> None:
    server, address = limited
    with ThreadPoolExecutor(2) as pool:
        slow = [pool.submit(infer, address, rows(SLOW_ROWS, s)) for s in (1, 2)]
        wait_until(lambda: server._limiter.in_flight == 2)
        client = tc.InferenceServerClient(address)
        try:
            assert client.is_server_live() and client.is_model_ready("slow")
            assert client.get_model_metadata("slow").inputs[0].name == "x"
        finally:
            client.close()
        for future in slow:
            future.result()


def test_calls_cancelled_while_waiting_for_a_thread_free_their_place(tmp_path: Path) -> None:
    # One gRPC thread: a slow call runs, the next ones wait for the thread and give up
    # (client deadline); gRPC never runs their handlers, yet their places come back.
    settings = make_settings(
        tmp_path / "data", max_inflight_requests=4, grpc_workers=1, measure_memory=False
    )
    server = GatewayServer(settings)
    server.start()
    address = f"127.0.0.1:{server.port}"
    try:
        with ParetoClient(address) as client:
            client.upload(write_slow_model(tmp_path / "slow.onnx"), "slow")
        infer(address, rows(1))
        with ThreadPoolExecutor(4) as pool:
            slow = pool.submit(infer, address, rows(SLOW_ROWS))
            wait_until(lambda: server._limiter.in_flight == 1)
            waiting = [pool.submit(infer, address, rows(1), 0.3) for _ in range(3)]
            for future in waiting:
                with pytest.raises(InferenceServerException) as err:
                    future.result()
                assert err.value.status() == "StatusCode.DEADLINE_EXCEEDED"
            slow.result()
        wait_until(lambda: server._limiter.in_flight == 0)
        x = rows(2)
        np.testing.assert_array_equal(infer(address, x), expected(x))
    finally:
        server.stop(grace=30.0)
