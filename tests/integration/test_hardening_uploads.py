"""Uploads that would expand, declare huge tensors or not load are refused at the door,
store nothing, and no message shows a server path."""

from __future__ import annotations

import hashlib
import io
import zipfile

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tc
from onnx import TensorProto, helper
from tritonclient.utils import InferenceServerException

from pareto.v1 import common_pb2, datasets_pb2, models_pb2
from tests.helpers.tiny_model import tiny_model_bytes

MiB = 1024 * 1024


def _model_messages(name: str, data: bytes, fmt: int) -> list[models_pb2.UploadModelRequest]:
    header = models_pb2.UploadHeader(
        name=name, format=fmt, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest()
    )
    return [models_pb2.UploadModelRequest(header=header), models_pb2.UploadModelRequest(chunk=data)]


def _upload_model(client, name: str, data: bytes, fmt: int = common_pb2.MODEL_FORMAT_ONNX):
    return client.models.UploadModel(iter(_model_messages(name, data, fmt)))


def _refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    return refused.value


def _npy_header(shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def test_an_npz_declaring_a_negative_dimension_is_refused_before_loading(client, gateway):
    n = 10_000_000
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.npy", _npy_header((1, n)) + bytes(4 * n))
        archive.writestr("b.npy", _npy_header((1, -n)))
    data = buffer.getvalue()
    header = datasets_pb2.DatasetHeader(
        name="negative", size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest()
    )
    messages = [
        datasets_pb2.UploadDatasetRequest(header=header),
        datasets_pb2.UploadDatasetRequest(chunk=data),
    ]
    error = _refused(lambda: client.datasets.UploadDataset(iter(messages)))
    assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert "negative dimension" in error.details() or "PARETO_MAX_EXPANSION_RATIO" in (
        error.details()
    )
    assert gateway.repo.list_datasets() == []


def test_a_bundle_that_expands_far_beyond_its_size_is_refused(client, gateway):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.onnx", tiny_model_bytes())
        archive.writestr("weights.bin", bytes(100 * MiB))  # ~100 KB once deflated
    data = buffer.getvalue()
    assert len(data) < MiB
    error = _refused(
        lambda: _upload_model(client, "bomb", data, common_pb2.MODEL_FORMAT_ONNX_BUNDLE)
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "PARETO_MAX_EXPANSION_RATIO" in error.details() or "more than the limit" in (
        error.details()
    )
    assert gateway.repo.list_models() == []


def _single_node_model(node, inputs, outputs, initializers=()) -> bytes:
    graph = helper.make_graph([node], "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_a_tiny_model_declaring_a_huge_input_is_refused(client, gateway):
    data = _single_node_model(
        helper.make_node("Relu", ["x"], ["y"]),
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [20000, 20000])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [20000, 20000])],
    )
    error = _refused(lambda: _upload_model(client, "huge", data))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "PARETO_MAX_TENSOR_ELEMENTS" in error.details()
    assert gateway.repo.list_models() == []


def test_a_model_growing_a_huge_constant_is_refused(client, gateway):
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [20000, 20000])
    data = _single_node_model(
        helper.make_node("ConstantOfShape", ["shape"], ["y"]),
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", "columns"])],
        [shape],
    )
    error = _refused(lambda: _upload_model(client, "grows", data))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "PARETO_MAX_TENSOR_ELEMENTS" in error.details()
    assert gateway.repo.list_models() == []


def test_a_model_with_an_unknown_op_domain_is_refused_at_upload(client, gateway):
    graph = helper.make_graph(
        [helper.make_node("Mystery", ["x"], ["y"], domain="com.example.unknown")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.example.unknown", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    error = _refused(lambda: _upload_model(client, "mystery", model.SerializeToString()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cannot run it" in error.details()
    assert gateway.repo.list_models() == []


def test_error_messages_show_no_server_path(client, gateway, triton):
    _upload_model(client, "tiny", tiny_model_bytes())
    record = gateway.repo.get_model("tiny")
    gateway.blobs.path(record.sha256).write_bytes(b"garbage")  # damaged on disk: load fails
    x = tc.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(np.ones((1, 4), np.float32))
    n = tc.InferInput("n", [1, 4], "INT64")
    n.set_data_from_numpy(np.ones((1, 4), np.int64))
    with pytest.raises(InferenceServerException) as failed:
        triton.infer("tiny", [x, n])
    message = failed.value.message()
    assert str(gateway.blobs.root.resolve()) not in message
    assert "<data dir>" in message
