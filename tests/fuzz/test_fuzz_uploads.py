"""Malformed UploadModel / UploadDataset streams: missing or repeated headers, wrong order,
truncated or padded bodies, wrong sizes and hashes, garbage bytes, huge declared sizes."""

from __future__ import annotations

import hashlib
import itertools

import grpc
from hypothesis import given
from hypothesis import strategies as st

from pareto.v1 import common_pb2, datasets_pb2, models_pb2
from tests.helpers.fuzz import DEADLINE_S, MAX_MESSAGE_BYTES, TALLY, Fuzzed, fuzz, staging_files
from tests.helpers.npz_strategies import npz_payloads
from tests.helpers.tiny_model import tiny_model_bytes

VALID = tiny_model_bytes()
INT64 = st.integers(-(2**63), 2**63 - 1)

# Valid values are drawn often, so that later checks (size, hash, body) are reached too.
GOOD_NAMES = st.sampled_from(["up", "up.v2", "A-b_c.9", "tiny"])
names = st.one_of(
    GOOD_NAMES,
    GOOD_NAMES,
    st.sampled_from(["", "-x", "a/b", "../etc", "x" * 129, "é", "a b", "a\x00"]),
    st.text(max_size=30),
)
ONNX = common_pb2.MODEL_FORMAT_ONNX
formats = st.one_of(
    st.just(ONNX),
    st.just(ONNX),
    st.sampled_from([common_pb2.MODEL_FORMAT_ONNX_BUNDLE, common_pb2.MODEL_FORMAT_TORCH_EXPORT, 0]),
    st.integers(-(2**31), 2**31 - 1),
)
sizes = st.one_of(
    st.none(),  # the true size
    st.none(),
    st.sampled_from([0, -1, 1, 2**20 + 1, 2**31, 2**40, 2**63 - 1, -(2**63)]),
    INT64,
)
hashes = st.one_of(
    st.none(),  # the true sha256
    st.none(),
    st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    st.text(max_size=70),
)


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["valid", "truncated", "padded", "flipped", "garbage", "empty"]))
    if kind == "valid":
        return VALID
    if kind == "truncated":
        return VALID[: draw(st.integers(0, len(VALID) - 1))]
    if kind == "padded":
        return VALID + draw(st.binary(min_size=1, max_size=64))
    if kind == "flipped":
        i = draw(st.integers(0, len(VALID) - 1))
        return VALID[:i] + bytes([VALID[i] ^ draw(st.integers(1, 255))]) + VALID[i + 1 :]
    return draw(st.binary(max_size=2048)) if kind == "garbage" else b""


def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def upload_streams(draw: st.DrawFn) -> list[models_pb2.UploadModelRequest]:
    data = draw(payloads())
    size, sha = draw(sizes), draw(hashes)
    header = models_pb2.UploadHeader(
        name=draw(names),
        format=draw(formats),
        size_bytes=len(data) if size is None else size,
        sha256=hashlib.sha256(data).hexdigest() if sha is None else sha,
        description=draw(st.text(max_size=50)),
        labels=draw(
            st.one_of(
                st.just({}), st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=3)
            )
        ),
        new_version=draw(st.booleans()),
    )
    head = models_pb2.UploadModelRequest(header=header)
    body = [models_pb2.UploadModelRequest(chunk=c) for c in chunked(draw, data)]
    layout = draw(st.sampled_from(["ok", "no header", "header twice", "header last", "blank"]))
    if layout == "no header":
        return body
    if layout == "header twice":
        body.insert(draw(st.integers(0, len(body))), head)
    if layout == "header last":
        return [*body, head]
    if layout == "blank":  # messages with neither header nor chunk set
        body.insert(draw(st.integers(0, len(body))), models_pb2.UploadModelRequest())
    return [head, *body]


@fuzz(800)
@given(stream=upload_streams())
def test_fuzz_upload_model(fuzzed: Fuzzed, stream):
    upload = fuzzed.client.models.UploadModel
    fuzzed.call("UploadModel", lambda: upload(iter(stream), timeout=DEADLINE_S))


@st.composite
def dataset_streams(draw: st.DrawFn) -> list[datasets_pb2.UploadDatasetRequest]:
    data = draw(npz_payloads())
    size, sha = draw(sizes), draw(hashes)
    header = datasets_pb2.DatasetHeader(
        name=draw(names),
        size_bytes=len(data) if size is None else size,
        sha256=hashlib.sha256(data).hexdigest() if sha is None else sha,
    )
    body = [datasets_pb2.UploadDatasetRequest(chunk=c) for c in chunked(draw, data)]
    if draw(st.booleans()):
        return [datasets_pb2.UploadDatasetRequest(header=header), *body]
    return body  # no header


@fuzz(600)
@given(stream=dataset_streams())
def test_fuzz_upload_dataset(fuzzed: Fuzzed, stream):
    upload = fuzzed.client.datasets.UploadDataset
    fuzzed.call("UploadDataset", lambda: upload(iter(stream), timeout=DEADLINE_S))


def test_oversized_message_is_resource_exhausted(fuzzed: Fuzzed):
    header = models_pb2.UploadHeader(name="big", format=common_pb2.MODEL_FORMAT_ONNX)
    header.size_bytes, header.sha256 = MAX_MESSAGE_BYTES + 1, "0" * 64
    stream = [
        models_pb2.UploadModelRequest(header=header),
        models_pb2.UploadModelRequest(chunk=bytes(MAX_MESSAGE_BYTES + 1)),
    ]
    upload = fuzzed.client.models.UploadModel
    code = fuzzed.call("UploadModel (message too large)", lambda: upload(iter(stream)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_uploads_left_no_trace_and_the_server_serves(fuzzed: Fuzzed):
    assert staging_files(fuzzed.gateway) == []
    stored = {m.name for m in fuzzed.client.list_models()}
    assert "big" not in stored and "tiny" in stored
    datasets = fuzzed.client.datasets.ListDatasets(datasets_pb2.ListDatasetsRequest()).datasets
    assert len(datasets) == 1 + TALLY["UploadDataset"]["OK"]  # refused uploads stored nothing
    fuzzed.infer_ok()
