"""Malformed KServe v2 requests: wrong datatypes, byte lengths and shapes, huge and
negative dims, empty tensors, mismatched raw_input_contents, odd names and versions.
Sent with the raw generated stub (tritonclient's own client would refuse most of them)."""

from __future__ import annotations

import grpc
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2 as pb

from tests.helpers.fuzz import DEADLINE_S, EXPECTED, MODEL, TALLY, Fuzzed, fuzz

DATATYPES = ["FP32", "INT64", "FP16", "FP64", "INT32", "INT8", "UINT8", "BOOL", "BYTES", "", "?"]
ITEMSIZE = {"FP32": 4, "INT64": 8, "FP16": 2, "FP64": 8, "INT32": 4, "INT8": 1, "UINT8": 1}
DIMS = st.one_of(
    st.integers(0, 5),
    st.just(4),
    st.sampled_from([-1, -(2**63), 2**31, 2**62, 2**63 - 1]),
    st.integers(-(2**63), 2**63 - 1),
)
CONTENT_FIELDS = [
    "fp32_contents",
    "int64_contents",
    "int_contents",
    "bool_contents",
    "bytes_contents",
]

model_names = st.one_of(
    st.just(MODEL), st.just(MODEL), st.sampled_from(["", "nope", "tiny.var-0123456789", "../x"])
)
versions = st.one_of(st.just(""), st.sampled_from(["1", "0", "2", "-1", "var-0123456789", "x"]))


@st.composite
def tensors(draw: st.DrawFn) -> tuple[pb.ModelInferRequest.InferInputTensor, bytes]:
    """One input tensor header plus raw bytes that fit its declared shape or not."""
    name = draw(st.one_of(st.sampled_from(["x", "n"]), st.text(max_size=5)))
    right = {"x": "FP32", "n": "INT64"}.get(name, "FP32")
    datatype = draw(st.one_of(st.just(right), st.sampled_from(DATATYPES)))
    shape = draw(
        st.one_of(
            st.tuples(st.integers(0, 3), st.just(4)).map(list),
            st.lists(DIMS, max_size=4),
        )
    )
    tensor = pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape)
    if draw(st.integers(0, 9)) == 0:
        tensor.parameters["shared_memory_region"].string_param = "r"
    count = int(np.prod(shape)) if shape and all(0 <= d <= 64 for d in shape) else 1
    size = count * ITEMSIZE.get(datatype, 4)
    raw = draw(
        st.one_of(
            st.just(bytes(size)),
            st.just(bytes(size)),
            st.binary(max_size=96),
            st.just(bytes(max(0, size - 1))),
        )
    )
    if draw(st.integers(0, 4)) == 0:  # typed contents instead of raw bytes
        field = draw(st.sampled_from(CONTENT_FIELDS))
        values = draw(st.lists(st.integers(-3, 3), max_size=12))
        getattr(tensor.contents, field).extend(
            [bytes(abs(v)) for v in values] if field == "bytes_contents" else values
        )
    return tensor, raw


@st.composite
def infer_requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(
        model_name=draw(model_names), model_version=draw(versions), id=draw(st.text(max_size=8))
    )
    pairs = draw(st.lists(tensors(), max_size=3))
    request.inputs.extend([t for t, _ in pairs])
    raws = [r for _, r in pairs]
    raw_count = draw(st.sampled_from(["all", "all", "none", "fewer", "more"]))
    if raw_count == "fewer":
        raws = raws[:-1]
    elif raw_count == "more":
        raws = [*raws, b"\0" * 16]
    elif raw_count == "none":
        raws = []
    request.raw_input_contents.extend(raws)
    for name in draw(st.lists(st.sampled_from(["y", "m", "z", ""]), max_size=3)):
        output = request.outputs.add(name=name)
        if draw(st.booleans()):
            output.parameters["classification"].int64_param = 1
    return request


@st.composite
def near_valid_requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    """A valid request (batches may differ between inputs, or be 0), maybe with one
    mutation: a cut or padded buffer, a wrong dtype, an extra dim."""
    request = pb.ModelInferRequest(model_name=MODEL, model_version=draw(st.sampled_from(["", "1"])))
    for name, datatype, item in (("x", "FP32", 4), ("n", "INT64", 8)):
        batch = draw(st.integers(0, 3))
        request.inputs.add(name=name, datatype=datatype, shape=[batch, 4])
        request.raw_input_contents.append(
            draw(st.binary(min_size=batch * 4 * item, max_size=batch * 4 * item))
        )
    mutation = draw(st.sampled_from(["none", "none", "cut", "pad", "dtype", "dim", "swap"]))
    k = draw(st.integers(0, 1))
    if mutation == "cut":
        request.raw_input_contents[k] = request.raw_input_contents[k][:-1]
    elif mutation == "pad":
        request.raw_input_contents[k] += b"\0"
    elif mutation == "dtype":
        request.inputs[k].datatype = draw(st.sampled_from(DATATYPES))
    elif mutation == "dim":
        request.inputs[k].shape.append(draw(DIMS))
    elif mutation == "swap":
        request.inputs[0].name, request.inputs[1].name = "n", "x"
    return request


@fuzz(1200)
@given(request=st.one_of(infer_requests(), near_valid_requests()))
def test_fuzz_model_infer(fuzzed: Fuzzed, request):
    fuzzed.call("ModelInfer", lambda: fuzzed.kserve.ModelInfer(request, timeout=DEADLINE_S))


@fuzz(200)
@given(
    requests=st.lists(st.one_of(infer_requests(), near_valid_requests()), min_size=1, max_size=4)
)
def test_fuzz_model_stream_infer(fuzzed: Fuzzed, requests):
    """Errors travel in the stream (Triton semantics); the stream itself ends cleanly."""

    def run() -> None:
        answers = list(fuzzed.kserve.ModelStreamInfer(iter(requests), timeout=DEADLINE_S))
        assert len(answers) == len(requests)
        for answer in answers:  # each in-stream answer counts as a case too
            code = answer.error_message.split(":", 1)[0] if answer.error_message else "OK"
            TALLY["ModelStreamInfer (each message)"][code] += 1
            assert code in {c.name for c in EXPECTED}, answer.error_message[:300]

    fuzzed.call("ModelStreamInfer", run)


@fuzz(150)
@given(name=model_names, version=versions)
def test_fuzz_model_metadata_and_ready(fuzzed: Fuzzed, name, version):
    stub = fuzzed.kserve
    request = pb.ModelMetadataRequest(name=name, version=version)
    fuzzed.call("ModelMetadata", lambda: stub.ModelMetadata(request, timeout=DEADLINE_S))
    ready = pb.ModelReadyRequest(name=name, version=version)
    fuzzed.call("ModelReady", lambda: stub.ModelReady(ready, timeout=DEADLINE_S))


def test_huge_names_are_refused_briefly(fuzzed: Fuzzed):
    request = pb.ModelInferRequest(model_name="a" * 1_000_000, model_version="v" * 1_000_000)
    code = fuzzed.call(
        "ModelInfer (1 MB name)", lambda: fuzzed.kserve.ModelInfer(request, timeout=DEADLINE_S)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert fuzzed.last_details.startswith("model_name must match")
    assert len(fuzzed.last_details) < 300


def test_inference_still_works_after_fuzzing(fuzzed: Fuzzed):
    fuzzed.infer_ok()
