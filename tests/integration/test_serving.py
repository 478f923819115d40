"""Upload both real models, then serve them to an unmodified tritonclient."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as tc
from tritonclient.utils import InferenceServerException

from examples.models import tokenize
from examples.text import english_sentences
from pareto_cli.client import ParetoClient
from runtimes.onnxruntime_cpu import session_options_from
from service.server import GatewayServer
from tests.helpers.gateway_settings import ORT_OPTIONS, make_settings


def direct_run(path, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(
        str(path), session_options_from(ORT_OPTIONS), providers=["CPUExecutionProvider"]
    )
    return session.run(None, inputs)


def triton_infer(triton, model: str, inputs: dict[str, np.ndarray], version: str = ""):
    tensors = []
    for name, array in inputs.items():
        tensor = tc.InferInput(name, list(array.shape), tc.np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return triton.infer(model, tensors, model_version=version)


def test_digits_cnn_matches_direct_onnxruntime(client, triton, digits_model):
    stored = client.upload(digits_model.path, "digits")
    assert (stored.version, stored.inputs[0].name, list(stored.inputs[0].shape)) == (
        1,
        "pixels",
        [-1, 1, 8, 8],
    )
    pixels = digits_model.X_test[:64].astype(np.float32)
    result = triton_infer(triton, "digits", {"pixels": pixels})
    logits = result.as_numpy("logits")
    (expected,) = direct_run(digits_model.path, {"pixels": pixels})
    assert np.max(np.abs(logits - expected)) <= 1e-5
    accuracy = float(np.mean(logits.argmax(1) == digits_model.y_test[:64]))
    assert accuracy > 0.8
    assert result.get_response().model_version == "1"


def test_minilm_matches_direct_onnxruntime(client, triton, minilm_model):
    client.upload(minilm_model.path, "minilm")
    inputs = tokenize(english_sentences(4), seq_len=32)
    embedding = triton_infer(triton, "minilm", inputs).as_numpy("embedding")
    (expected,) = direct_run(minilm_model.path, inputs)
    assert embedding.shape == (4, 384)
    assert np.max(np.abs(embedding - expected)) <= 1e-5


def test_health_metadata_and_repository_extension(client, triton, digits_model):
    client.upload(digits_model.path, "digits")
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.get_server_metadata().name == "pareto"
    meta = triton.get_model_metadata("digits")
    assert meta.platform == "onnxruntime_cpu"
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("pixels", "FP32", [-1, 1, 8, 8])
    ]
    # Loaded on demand: ready at once, as an inference would succeed at once.
    assert triton.is_model_ready("digits")
    (entry,) = triton.get_model_repository_index().models
    assert (entry.name, entry.version, entry.state) == ("digits", "1", "READY")
    assert entry.reason == "loads on its first request"
    triton.load_model("digits")
    assert triton.is_model_ready("digits")
    index = triton.get_model_repository_index().models
    assert [(m.name, m.version, m.state, m.reason) for m in index] == [("digits", "1", "READY", "")]
    triton.unload_model("digits")
    assert triton.is_model_ready("digits")  # the next request loads it again


def test_without_load_on_demand_a_model_is_ready_once_loaded(tmp_path, digits_model):
    gateway = GatewayServer(make_settings(tmp_path / "data", load_on_demand=False))
    gateway.start()
    address = f"127.0.0.1:{gateway.port}"
    try:
        with ParetoClient(address) as client:
            client.upload(digits_model.path, "digits")
        triton = tc.InferenceServerClient(address)
        assert not triton.is_model_ready("digits")
        (entry,) = triton.get_model_repository_index().models
        assert entry.state == "UNAVAILABLE" and "load it" in entry.reason
        triton.load_model("digits")
        assert triton.is_model_ready("digits")
        triton.unload_model("digits")
        assert not triton.is_model_ready("digits")
        triton.close()
    finally:
        gateway.stop(grace=1.0)


def test_version_pinning(client, triton, digits_model, minilm_model):
    client.upload(digits_model.path, "net")
    second = client.upload(digits_model.path, "net", new_version=True)
    assert second.version == 2
    pixels = digits_model.X_test[:2].astype(np.float32)
    assert triton_infer(triton, "net", {"pixels": pixels}).get_response().model_version == "2"
    pinned = triton_infer(triton, "net", {"pixels": pixels}, version="1")
    assert pinned.get_response().model_version == "1"


def test_stream_infer_reports_errors_in_stream(client, triton, digits_model):
    client.upload(digits_model.path, "digits")
    results = []
    triton.start_stream(callback=lambda result, error: results.append((result, error)))
    good = tc.InferInput("pixels", [1, 1, 8, 8], "FP32")
    good.set_data_from_numpy(digits_model.X_test[:1].astype(np.float32))
    bad = tc.InferInput("pixels", [1, 8, 8], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 8, 8), np.float32))
    triton.async_stream_infer("digits", [good])
    triton.async_stream_infer("digits", [bad])
    triton.async_stream_infer("digits", [good])
    triton.stop_stream()
    assert [error is None for _, error in results] == [True, False, True]
    assert "pixels" in str(results[1][1])


@pytest.mark.parametrize(
    ("model", "name", "array", "status", "words"),
    [
        ("digits", "pixels", np.zeros((1, 1, 8, 8), np.float64), "INVALID_ARGUMENT", "FP32"),
        ("digits", "pixels", np.zeros((1, 8, 8), np.float32), "INVALID_ARGUMENT", "shape"),
        ("digits", "image", np.zeros((1, 1, 8, 8), np.float32), "INVALID_ARGUMENT", "pixels"),
        ("nope", "pixels", np.zeros((1, 1, 8, 8), np.float32), "NOT_FOUND", "nope"),
    ],
)
def test_bad_inference_requests(client, triton, digits_model, model, name, array, status, words):
    client.upload(digits_model.path, "digits")
    with pytest.raises(InferenceServerException) as info:
        triton_infer(triton, model, {name: array})
    assert info.value.status() == f"StatusCode.{status}"
    assert words in info.value.message()
