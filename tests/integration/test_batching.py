"""Dynamic batching on a real server: concurrent requests of different sizes each get
exactly their rows (checked against direct ONNX Runtime), batches really form, mixed
shapes run apart unless padding is allowed, the queue bound and deadlines hold, one bad
request fails alone; ModelConfig and ModelStatistics read like Triton's."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as tc
from tritonclient.utils import InferenceServerException

from examples.models import MINILM_INPUTS, tokenize
from examples.text import english_sentences
from pareto.v1 import models_pb2
from pareto_cli.client import ParetoClient
from service.server import GatewayServer
from tests.helpers.gateway_settings import make_settings
from tests.helpers.slow_model import expected, rows, write_slow_model

ROWS = (1, 3, 2, 5, 1, 4, 2, 7)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[GatewayServer]:
    gateway = GatewayServer(make_settings(tmp_path / "data", measure_memory=False))
    gateway.start()
    yield gateway
    gateway.stop(grace=5.0)


def _configure(client: ParetoClient, name: str, **batching: object) -> models_pb2.ServingConfig:
    config = models_pb2.ServingConfig(batching=models_pb2.BatchingConfig(**batching))
    request = models_pb2.SetServingConfigRequest(name=name, config=config)
    return client.models.SetServingConfig(request)


def _slow(address: str, x: np.ndarray, timeout: float | None = None) -> np.ndarray:
    triton = tc.InferenceServerClient(address)
    try:
        tensor = tc.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        return triton.infer("slow", [tensor], client_timeout=timeout).as_numpy("y")
    finally:
        triton.close()


def test_concurrent_requests_of_different_sizes_get_exactly_their_rows(server, tmp_path):
    address = f"127.0.0.1:{server.port}"
    with ParetoClient(address) as client:
        client.upload(write_slow_model(tmp_path / "slow.onnx"), "slow")
        _configure(client, "slow", max_batch_size=32, max_queue_delay_us=200_000)
    inputs = [rows(n, seed) for seed, n in enumerate(ROWS)]
    start = threading.Barrier(len(inputs))

    def call(x: np.ndarray) -> np.ndarray:
        start.wait()
        return _slow(address, x)

    with futures.ThreadPoolExecutor(len(inputs)) as pool:
        outputs = list(pool.map(call, inputs))
    for x, y in zip(inputs, outputs, strict=True):
        np.testing.assert_array_equal(y, expected(x))
    stats = tc.InferenceServerClient(address).get_inference_statistics("slow").model_stats
    (entry,) = stats
    assert entry.inference_stats.success.count == len(inputs)
    assert entry.inference_count == sum(ROWS)
    # Fewer runs than requests: they were batched (within one 200 ms window, 8 requests).
    assert entry.execution_count < len(inputs)
    assert sum(b.compute_infer.count for b in entry.batch_stats) == entry.execution_count
    assert max(b.batch_size for b in entry.batch_stats) > max(ROWS)


def test_minilm_batched_matches_direct_onnxruntime(server, minilm_model):
    address = f"127.0.0.1:{server.port}"
    with ParetoClient(address) as client:
        client.upload(minilm_model.path, "minilm")
        _configure(client, "minilm", max_queue_delay_us=200_000, pad_inputs=list(MINILM_INPUTS))
    sentences = english_sentences(12, seed=3)
    feeds = [tokenize([s], 32 if i % 2 else 16) for i, s in enumerate(sentences)]
    direct = ort.InferenceSession(str(minilm_model.path), providers=["CPUExecutionProvider"])
    start = threading.Barrier(len(feeds))

    def call(feed: dict[str, np.ndarray]) -> np.ndarray:
        triton = tc.InferenceServerClient(address)
        tensors = []
        for name in MINILM_INPUTS:
            tensor = tc.InferInput(name, list(feed[name].shape), "INT64")
            tensor.set_data_from_numpy(feed[name])
            tensors.append(tensor)
        start.wait()
        try:
            return triton.infer("minilm", tensors).as_numpy("embedding")
        finally:
            triton.close()

    with futures.ThreadPoolExecutor(len(feeds)) as pool:
        outputs = list(pool.map(call, feeds))
    for feed, got in zip(feeds, outputs, strict=True):
        want = direct.run(["embedding"], feed)[0]
        np.testing.assert_allclose(got, want, atol=1e-5)  # padding with a zero mask is exact
    (entry,) = tc.InferenceServerClient(address).get_inference_statistics("minilm").model_stats
    assert entry.inference_stats.success.count == len(feeds)
    assert entry.execution_count < len(feeds)  # they ran in batches


def test_mixed_shapes_without_padding_run_apart_and_all_answer(server, minilm_model):
    address = f"127.0.0.1:{server.port}"
    with ParetoClient(address) as client:
        client.upload(minilm_model.path, "minilm")
        _configure(client, "minilm", max_queue_delay_us=100_000)
    feeds = [tokenize(["a short one"], n) for n in (8, 16, 8, 16)]
    direct = ort.InferenceSession(str(minilm_model.path), providers=["CPUExecutionProvider"])

    def call(feed: dict[str, np.ndarray]) -> np.ndarray:
        triton = tc.InferenceServerClient(address)
        tensors = []
        for name in MINILM_INPUTS:
            tensor = tc.InferInput(name, list(feed[name].shape), "INT64")
            tensor.set_data_from_numpy(feed[name])
            tensors.append(tensor)
        try:
            return triton.infer("minilm", tensors).as_numpy("embedding")
        finally:
            triton.close()

    with futures.ThreadPoolExecutor(len(feeds)) as pool:
        outputs = list(pool.map(call, feeds))
    for feed, got in zip(feeds, outputs, strict=True):
        np.testing.assert_allclose(got, direct.run(["embedding"], feed)[0], atol=1e-5)


def _statistics(address: str, name: str):
    triton = tc.InferenceServerClient(address)
    try:
        (entry,) = triton.get_inference_statistics(name).model_stats
        return entry
    finally:
        triton.close()


def test_a_full_queue_is_resource_exhausted(server, tmp_path):
    address = f"127.0.0.1:{server.port}"
    with ParetoClient(address) as client:
        client.upload(write_slow_model(tmp_path / "slow.onnx"), "slow")
        # One request waits a second for company; there is room for no other.
        _configure(client, "slow", max_queue_delay_us=1_000_000, max_queue_size=1)
    with futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(_slow, address, rows(1), 60)
        wait_for(lambda: server.sessions.loaded() and _queued(server) == 1)
        with pytest.raises(InferenceServerException) as full:
            _slow(address, rows(1, 1), 60)
        assert "RESOURCE_EXHAUSTED" in str(full.value.status())
        assert "max_queue_size" in full.value.message()
        np.testing.assert_array_equal(waiting.result(), expected(rows(1)))


def _queued(server: GatewayServer) -> int:
    (model,) = server.sessions.loaded()
    return len(model.batcher._queue) if model.batcher is not None else 0


def test_a_request_whose_deadline_passes_in_the_queue_is_not_run(server, tmp_path):
    address = f"127.0.0.1:{server.port}"
    with ParetoClient(address) as client:
        client.upload(write_slow_model(tmp_path / "slow.onnx"), "slow")
        _configure(client, "slow", max_queue_delay_us=2_000_000)
    with pytest.raises(InferenceServerException) as expired:
        _slow(address, rows(1), timeout=0.3)
    assert "DEADLINE" in str(expired.value.status()).upper()
    wait_for(lambda: _statistics(address, "slow").inference_stats.fail.count == 1)
    assert _statistics(address, "slow").execution_count == 0  # withdrawn, never run


def wait_for(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_a_bad_request_in_a_batch_fails_alone(server, minilm_model):
    address = f"127.0.0.1:{server.port}"
    with ParetoClient(address) as client:
        client.upload(minilm_model.path, "minilm")
        _configure(client, "minilm", max_queue_delay_us=200_000)
    good = tokenize(["a fine sentence"], 8)
    bad = {name: array.copy() for name, array in good.items()}
    bad["input_ids"][0, 1] = 10**9  # no such token: the embedding lookup fails
    start = threading.Barrier(3)

    def call(feed: dict[str, np.ndarray]) -> str:
        triton = tc.InferenceServerClient(address)
        tensors = []
        for name in MINILM_INPUTS:
            tensor = tc.InferInput(name, list(feed[name].shape), "INT64")
            tensor.set_data_from_numpy(feed[name])
            tensors.append(tensor)
        start.wait()
        try:
            triton.infer("minilm", tensors)
            return "OK"
        except InferenceServerException as exc:
            return str(exc.status())
        finally:
            triton.close()

    with futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(call, [good, bad, good]))
    assert results[0] == results[2] == "OK" and results[1] != "OK", results


def test_config_is_checked_and_model_config_reads_like_triton(server, minilm_model, tmp_path):
    address = f"127.0.0.1:{server.port}"
    with ParetoClient(address) as client:
        client.upload(minilm_model.path, "minilm")
        with pytest.raises(grpc.RpcError) as unknown:
            _configure(client, "minilm", pad_inputs=["nope"])
        assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "nope" in unknown.value.details()
        with pytest.raises(grpc.RpcError) as bad:
            _configure(client, "minilm", max_batch_size=8, preferred_batch_sizes=[16])
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        stored = _configure(
            client,
            "minilm",
            max_batch_size=16,
            preferred_batch_sizes=[4, 8],
            max_queue_delay_us=500,
            instances=2,
        )
        assert stored.batching.max_batch_size == 16
        fetched = client.models.GetServingConfig(models_pb2.GetServingConfigRequest(name="minilm"))
        assert fetched == stored
    triton = tc.InferenceServerClient(address)
    config = triton.get_model_config("minilm").config
    assert config.max_batch_size == 16
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.instance_group[0].count == 2
    assert [t.name for t in config.input] == list(MINILM_INPUTS)
    assert config.parameters["pareto_sha256"].string_value == server.repo.get_model("minilm").sha256
    assert triton.is_model_ready("minilm")
    triton.close()
