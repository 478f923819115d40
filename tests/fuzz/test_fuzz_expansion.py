"""Uploads shaped to expand: archives whose members unpack far beyond their size, .npy
headers whose dimensions cancel out or go negative, ONNX models declaring huge, zero or
negative tensor sizes or growing constants. Each must get a deliberate status and leave
nothing behind; the server keeps serving."""

from __future__ import annotations

import hashlib
import io
import math
import tarfile
import zipfile

from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper

from pareto.v1 import common_pb2, datasets_pb2, models_pb2
from tests.helpers.fuzz import DEADLINE_S, Fuzzed, fuzz, staging_files
from tests.helpers.npz_strategies import npy_member, zip_of
from tests.helpers.tiny_model import tiny_model_bytes

MiB = 1024 * 1024
BIG = [1_000, 2**20, 2**28, 2**40]


@st.composite
def expanding_npz(draw: st.DrawFn) -> bytes:
    n = draw(st.sampled_from(BIG))
    shapes = draw(
        st.sampled_from(
            [((1, n), (1, -n)), ((n,), (-1,)), ((n, 4), (0, 4)), ((n, 4),), ((2, n), (-2, n))]
        )
    )
    members = []
    for i, shape in enumerate(shapes):
        declared = max(0, math.prod(shape)) * 4
        members.append((f"a{i}.npy", npy_member("<f4", shape, bytes(min(declared, 8 * MiB)))))
    return zip_of(members, zipfile.ZIP_DEFLATED)


@st.composite
def expanding_bundles(draw: st.DrawFn) -> bytes:
    zeros = bytes(draw(st.sampled_from([MiB, 8 * MiB, 32 * MiB])))
    if draw(st.booleans()):
        return zip_of([("model.onnx", tiny_model_bytes()), ("w.bin", zeros)], zipfile.ZIP_DEFLATED)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in (("model.onnx", tiny_model_bytes()), ("w.bin", zeros)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


DIMS = st.one_of(st.sampled_from([1, 4, 0, -5, 20000, 2**31, 2**62]), st.just("batch"))


@st.composite
def declared_shape_models(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        dims = draw(st.lists(DIMS, min_size=1, max_size=3))
        graph = helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)],
        )
    else:
        values = draw(st.lists(st.sampled_from([1, 3, 20000, 2**31, -1]), min_size=1, max_size=3))
        shape = helper.make_tensor("shape", TensorProto.INT64, [len(values)], values)
        graph = helper.make_graph(
            [helper.make_node("ConstantOfShape", ["shape"], ["y"])],
            "g",
            [],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["d"] * len(values))],
            [shape],
        )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _model_stream(name: str, data: bytes, fmt: int) -> list[models_pb2.UploadModelRequest]:
    header = models_pb2.UploadHeader(
        name=name, format=fmt, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest()
    )
    return [models_pb2.UploadModelRequest(header=header), models_pb2.UploadModelRequest(chunk=data)]


@fuzz(60)
@given(data=expanding_npz())
def test_fuzz_expanding_datasets(fuzzed: Fuzzed, data: bytes):
    header = datasets_pb2.DatasetHeader(
        name="grows", size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest()
    )
    stream = [
        datasets_pb2.UploadDatasetRequest(header=header),
        datasets_pb2.UploadDatasetRequest(chunk=data),
    ]
    upload = fuzzed.client.datasets.UploadDataset
    fuzzed.call("UploadDataset (expanding)", lambda: upload(iter(stream), timeout=DEADLINE_S))
    _forget_dataset(fuzzed, "grows")


@fuzz(20)
@given(data=expanding_bundles())
def test_fuzz_expanding_bundles(fuzzed: Fuzzed, data: bytes):
    stream = _model_stream("grows", data, common_pb2.MODEL_FORMAT_ONNX_BUNDLE)
    upload = fuzzed.client.models.UploadModel
    fuzzed.call("UploadModel (expanding bundle)", lambda: upload(iter(stream), timeout=DEADLINE_S))
    _forget_model(fuzzed, "grows")


@fuzz(40)
@given(data=declared_shape_models())
def test_fuzz_declared_tensor_sizes(fuzzed: Fuzzed, data: bytes):
    stream = _model_stream("shapes", data, common_pb2.MODEL_FORMAT_ONNX)
    upload = fuzzed.client.models.UploadModel
    fuzzed.call("UploadModel (declared sizes)", lambda: upload(iter(stream), timeout=DEADLINE_S))
    _forget_model(fuzzed, "shapes")


def _forget_model(fuzzed: Fuzzed, name: str) -> None:
    """A case that was accepted (a small, sane model) is removed for the next one."""
    if fuzzed.gateway.repo.name_exists(name):
        fuzzed.gateway.sessions.unload(name)
        fuzzed.client.delete_model(name)


def _forget_dataset(fuzzed: Fuzzed, name: str) -> None:
    if any(d.name == name for d in fuzzed.gateway.repo.list_datasets()):
        fuzzed.client.datasets.DeleteDataset(datasets_pb2.DeleteDatasetRequest(name=name))


def test_expanding_uploads_left_no_trace_and_the_server_serves(fuzzed: Fuzzed):
    assert staging_files(fuzzed.gateway) == []
    fuzzed.infer_ok()
