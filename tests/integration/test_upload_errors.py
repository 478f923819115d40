"""Every bad upload gets the right status code and leaves no trace in the store."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import grpc
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from pareto.v1 import common_pb2, models_pb2
from service.server import GatewayServer
from tests.helpers.gateway_settings import make_settings

ONNX = common_pb2.MODEL_FORMAT_ONNX
BUNDLE = common_pb2.MODEL_FORMAT_ONNX_BUNDLE


def store_files(data_dir: Path) -> set[str]:
    """Every file under the store, except the database and the lock."""
    return {
        str(p.relative_to(data_dir))
        for p in data_dir.rglob("*")
        if p.is_file() and not p.name.startswith(("metadata.db", ".lock"))
    }


def send(client, payload: bytes, *, name="m", fmt=ONNX, size=None, sha=None, chunks=None):
    header = models_pb2.UploadHeader(
        name=name,
        format=fmt,
        size_bytes=len(payload) if size is None else size,
        sha256=hashlib.sha256(payload).hexdigest() if sha is None else sha,
    )
    if chunks is None:
        chunks = [payload[i : i + 1000] for i in range(0, len(payload), 1000)]
    messages = [models_pb2.UploadModelRequest(header=header)]
    messages += [models_pb2.UploadModelRequest(chunk=c) for c in chunks]
    return client.models.UploadModel(iter(messages))


def bundle_with_external_location(location: str) -> bytes:
    weight = numpy_helper.from_array(np.ones((2, 2), "float32"), "w")
    weight.data_location = TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    weight.external_data.add(key="location", value=location)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model.onnx", model.SerializeToString())
        archive.writestr("weights.bin", b"\0" * 16)
    return buffer.getvalue()


@pytest.fixture
def good_bytes(digits_model) -> bytes:
    return Path(digits_model.path).read_bytes()


INVALID = grpc.StatusCode.INVALID_ARGUMENT


def cases(good: bytes) -> dict[str, tuple[dict, str]]:
    """case -> (arguments of `send`, a word the error message must contain)."""
    return {
        "truncated": (dict(payload=good, chunks=[good[:1000]]), "size"),
        "wrong sha256": (dict(payload=good, sha="0" * 64), "sha256"),
        "declared size too small": (dict(payload=good, size=100), "100"),
        "garbage as onnx": (dict(payload=b"not a model" * 50), "ONNX"),
        "bundle escaping with ..": (
            dict(payload=bundle_with_external_location("../weights.bin"), fmt=BUNDLE),
            "..",
        ),
        "bad name": (dict(payload=good, name="../x"), "name"),
    }


@pytest.mark.parametrize("case", list(cases(b"")))
def test_bad_upload_is_rejected_without_trace(gateway, client, good_bytes, case):
    kwargs, words = cases(good_bytes)[case]
    data_dir = gateway.settings.data_dir
    before = store_files(data_dir)
    with pytest.raises(grpc.RpcError) as info:
        send(client, **kwargs)
    assert info.value.code() == INVALID, info.value.details()
    assert words in info.value.details()
    assert store_files(data_dir) == before
    assert client.list_models() == []


def test_oversize_upload_is_resource_exhausted(tmp_path, good_bytes):
    server = GatewayServer(make_settings(tmp_path / "data", max_model_bytes=1000))
    server.start()
    try:
        from pareto_cli.client import ParetoClient

        with ParetoClient(f"127.0.0.1:{server.port}") as client:
            with pytest.raises(grpc.RpcError) as info:
                send(client, good_bytes)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "PARETO_MAX_MODEL_BYTES" in info.value.details()
            assert client.list_models() == []
        assert store_files(tmp_path / "data") == set()
    finally:
        server.stop(grace=1.0)


def test_duplicate_name_needs_new_version(gateway, client, digits_model):
    client.upload(digits_model.path, "digits")
    before = store_files(gateway.settings.data_dir)
    with pytest.raises(grpc.RpcError) as info:
        client.upload(digits_model.path, "digits")
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert store_files(gateway.settings.data_dir) == before
    assert client.upload(digits_model.path, "digits", new_version=True).version == 2


def test_delete_refused_while_loaded(gateway, client, triton, digits_model):
    client.upload(digits_model.path, "digits")
    triton.load_model("digits")
    with pytest.raises(grpc.RpcError) as info:
        client.delete_model("digits")
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    triton.unload_model("digits")
    assert [m.version for m in client.delete_model("digits")] == [1]
    assert client.list_models() == []
    assert not any(f.startswith("blobs") for f in store_files(gateway.settings.data_dir))
