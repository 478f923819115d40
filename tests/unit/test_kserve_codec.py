"""KServe v2 codec: requests built exactly as tritonclient builds them, and typed contents."""

from __future__ import annotations

import numpy as np
import pytest
from tritonclient.grpc import InferInput, InferRequestedOutput, InferResult, service_pb2
from tritonclient.grpc._utils import _get_inference_request

from pareto_core.errors import Internal, InvalidArgument
from pareto_core.tensors import KSERVE_TO_NUMPY, Signature, TensorSpec
from service.api.kserve_codec import (
    CONTENTS_FIELD,
    decode_inputs,
    encode_response,
    requested_outputs,
    tensor_metadata,
)

SIG = Signature(
    inputs=(TensorSpec("x", "FP32", (-1, 4)), TensorSpec("ids", "INT64", (-1,))),
    outputs=(TensorSpec("y", "FP32", (-1, 3)), TensorSpec("n", "INT64", ())),
)


def _wire(request: service_pb2.ModelInferRequest) -> service_pb2.ModelInferRequest:
    """The request as the server receives it: serialized and parsed again."""
    return service_pb2.ModelInferRequest.FromString(request.SerializeToString())


def client_request(
    inputs: list[InferInput], outputs: list[InferRequestedOutput] | None = None
) -> service_pb2.ModelInferRequest:
    """The request `InferenceServerClient.infer` sends for these inputs and outputs."""
    request = _get_inference_request(
        model_name="m",
        inputs=inputs,
        model_version="",
        request_id="req-1",
        outputs=outputs,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        parameters=None,
    )
    return _wire(request)


def infer_input(name: str, array: np.ndarray, datatype: str | None = None) -> InferInput:
    dtype = datatype or next(k for k, v in KSERVE_TO_NUMPY.items() if v == array.dtype)
    return InferInput(name, list(array.shape), dtype).set_data_from_numpy(array)


def good_inputs() -> list[InferInput]:
    return [
        infer_input("x", np.arange(8, dtype=np.float32).reshape(2, 4)),
        infer_input("ids", np.array([3, 4, 5], dtype=np.int64)),
    ]


def typed_request(**tensors: tuple[str, list[int], dict]) -> service_pb2.ModelInferRequest:
    """A hand-built request with typed contents: name=(datatype, shape, {field: values})."""
    request = service_pb2.ModelInferRequest(model_name="m")
    for name, (datatype, shape, contents) in tensors.items():
        request.inputs.add(
            name=name,
            datatype=datatype,
            shape=shape,
            contents=service_pb2.InferTensorContents(**contents),
        )
    return _wire(request)


def _sample(datatype: str, shape: tuple[int, ...]) -> np.ndarray:
    dtype = KSERVE_TO_NUMPY[datatype]
    rng = np.random.default_rng(0)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(np.bool_)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    return rng.standard_normal(shape).astype(dtype)


# --- decoding what tritonclient sends ------------------------------------------------


@pytest.mark.parametrize("datatype", sorted(KSERVE_TO_NUMPY))
def test_round_trip_every_datatype_through_tritonclient(datatype: str):
    array = _sample(datatype, (2, 3))
    signature = Signature((TensorSpec("t", datatype, (-1, 3)),), (TensorSpec("t", datatype, ()),))
    decoded = decode_inputs(client_request([infer_input("t", array, datatype)]), signature)
    assert decoded["t"].dtype == array.dtype
    np.testing.assert_array_equal(decoded["t"], array)

    response = encode_response("m", "1", "req-1", {"t": decoded["t"]})
    wire = service_pb2.ModelInferResponse.FromString(response.SerializeToString())
    assert wire.outputs[0].datatype == datatype
    back = InferResult(wire).as_numpy("t")
    assert back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)


def test_decode_several_inputs_in_request_order():
    decoded = decode_inputs(client_request(good_inputs()), SIG)
    assert list(decoded) == ["x", "ids"]
    np.testing.assert_array_equal(decoded["x"], np.arange(8, dtype=np.float32).reshape(2, 4))
    np.testing.assert_array_equal(decoded["ids"], [3, 4, 5])


def test_inputs_may_come_in_any_order():
    decoded = decode_inputs(client_request(good_inputs()[::-1]), SIG)
    assert decoded["x"].shape == (2, 4)
    assert decoded["ids"].shape == (3,)


def test_zero_size_and_scalar_tensors():
    signature = Signature(
        (TensorSpec("empty", "FP32", (-1, 4)), TensorSpec("scalar", "INT32", ())), ()
    )
    inputs = [
        infer_input("empty", np.zeros((0, 4), np.float32)),
        infer_input("scalar", np.array(7, dtype=np.int32)),
    ]
    decoded = decode_inputs(client_request(inputs), signature)
    assert decoded["empty"].shape == (0, 4)
    assert decoded["scalar"].shape == ()
    assert decoded["scalar"] == 7


# --- typed contents --------------------------------------------------------------------


@pytest.mark.parametrize("datatype", sorted(CONTENTS_FIELD))
def test_typed_contents_every_datatype(datatype: str):
    array = _sample(datatype, (2, 2))
    signature = Signature((TensorSpec("t", datatype, (2, 2)),), ())
    request = typed_request(t=(datatype, [2, 2], {CONTENTS_FIELD[datatype]: array.ravel()}))
    decoded = decode_inputs(request, signature)
    assert decoded["t"].dtype == array.dtype
    np.testing.assert_array_equal(decoded["t"], array)


def test_typed_fp16_is_refused():
    signature = Signature((TensorSpec("h", "FP16", (2,)),), ())
    request = typed_request(h=("FP16", [2], {"fp32_contents": [1.0, 2.0]}))
    with pytest.raises(InvalidArgument, match=r"'h'.*raw_input_contents"):
        decode_inputs(request, signature)


def test_typed_values_out_of_range_are_refused():
    signature = Signature((TensorSpec("b", "INT8", (2,)),), ())
    request = typed_request(b=("INT8", [2], {"int_contents": [1, 300]}))
    with pytest.raises(InvalidArgument, match=r"'b'.*\[-128, 127\].*300"):
        decode_inputs(request, signature)


def test_typed_data_in_the_wrong_field_is_refused():
    request = typed_request(
        x=("FP32", [1, 4], {"fp64_contents": [1.0] * 4}),
        ids=("INT64", [1], {"int64_contents": [1]}),
    )
    with pytest.raises(InvalidArgument, match=r"'x'.*fp32_contents.*fp64_contents"):
        decode_inputs(request, SIG)


# --- validation errors -----------------------------------------------------------------


def _edited(
    index: int = 0,
    *,
    datatype: str | None = None,
    shape: list[int] | None = None,
    raw: list[bytes] | None = None,
) -> service_pb2.ModelInferRequest:
    """A valid tritonclient request, then altered as a broken client might send it."""
    request = client_request(good_inputs())
    tensor = request.inputs[index]
    if datatype is not None:
        tensor.datatype = datatype
    if shape is not None:
        del tensor.shape[:]
        tensor.shape.extend(shape)
    if raw is not None:
        del request.raw_input_contents[:]
        request.raw_input_contents.extend(raw)
    return request


def _extra_input() -> service_pb2.ModelInferRequest:
    return client_request([*good_inputs(), infer_input("z", np.zeros(1, np.float32))])


def _duplicate_input() -> service_pb2.ModelInferRequest:
    return client_request([*good_inputs(), infer_input("ids", np.zeros(1, np.int64))])


def _mixed() -> service_pb2.ModelInferRequest:
    request = client_request(good_inputs())
    request.inputs[1].contents.int64_contents.extend([3, 4, 5])
    return request


def _shared_memory() -> service_pb2.ModelInferRequest:
    shm = InferInput("x", [2, 4], "FP32").set_shared_memory("region0", 32)
    return client_request([shm, good_inputs()[1]])


def _bytes_input() -> service_pb2.ModelInferRequest:
    text = np.array([b"ab", b"c"], dtype=np.object_)
    return client_request([good_inputs()[0], infer_input("ids", text, "BYTES")])


def _bad_bool() -> tuple[service_pb2.ModelInferRequest, Signature]:
    signature = Signature((TensorSpec("flag", "BOOL", (2,)),), ())
    request = client_request([infer_input("flag", np.array([True, False]))])
    request.raw_input_contents[0] = b"\x01\x02"
    return request, signature


ERROR_CASES = {
    "unknown input": (_extra_input, "'z'", r"expects inputs \['x', 'ids'\]"),
    "missing input": (lambda: client_request(good_inputs()[:1]), "'ids'", "missing"),
    "duplicate input": (_duplicate_input, "'ids'", "more than once"),
    "datatype": (lambda: _edited(1, datatype="INT32"), "'ids'", "expected datatype INT64"),
    "rank": (lambda: _edited(shape=[8]), "'x'", r"expected shape \[-1, 4\].*got \[8\]"),
    "fixed dim": (lambda: _edited(shape=[4, 2]), "'x'", r"\[-1, 4\].*got \[4, 2\]"),
    "negative dim": (lambda: _edited(shape=[-2, 4]), "'x'", "negative"),
    "raw length": (lambda: _edited(shape=[3, 4]), "'x'", "needs 48 bytes.*got 32"),
    "raw count": (lambda: _edited(raw=[b"\x00" * 32]), "raw_input_contents", "1 entries"),
    "mixed": (_mixed, "'ids'", "typed contents"),
    "shared memory": (_shared_memory, "'x'", "shared memory"),
    "bytes": (_bytes_input, "'ids'", "BYTES is not supported"),
    "typed count": (
        lambda: typed_request(
            x=("FP32", [1, 4], {"fp32_contents": [1.0] * 3}),
            ids=("INT64", [1], {"int64_contents": [1]}),
        ),
        "'x'",
        "needs 4 elements, contents.fp32_contents has 3",
    ),
    "no data": (
        lambda: typed_request(x=("FP32", [1, 4], {}), ids=("INT64", [0], {})),
        "'x'",
        "needs 4 elements.*has 0",
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_invalid_requests_name_the_tensor(case: str):
    build, tensor, detail = ERROR_CASES[case]
    with pytest.raises(InvalidArgument) as info:
        decode_inputs(build(), SIG)
    assert tensor in str(info.value)
    assert info.match(detail)


def test_bool_raw_bytes_must_be_zero_or_one():
    request, signature = _bad_bool()
    with pytest.raises(InvalidArgument, match=r"'flag'.*0 or 1"):
        decode_inputs(request, signature)


def test_bytes_message_says_what_was_expected():
    with pytest.raises(InvalidArgument, match=r"expected INT64"):
        decode_inputs(_bytes_input(), SIG)


# --- requested outputs -----------------------------------------------------------------


def test_requested_outputs_none_means_all():
    assert requested_outputs(client_request(good_inputs()), SIG) is None


def test_requested_outputs_in_request_order():
    outputs = [InferRequestedOutput("n"), InferRequestedOutput("y")]
    assert requested_outputs(client_request(good_inputs(), outputs), SIG) == ["n", "y"]


@pytest.mark.parametrize(
    ("outputs", "detail"),
    [
        ([InferRequestedOutput("logits")], r"unknown requested output 'logits'.*\['y', 'n'\]"),
        ([InferRequestedOutput("y"), InferRequestedOutput("y")], "'y' is requested more than"),
        ([InferRequestedOutput("y", class_count=3)], "'y'.*classification"),
    ],
)
def test_bad_requested_outputs(outputs: list[InferRequestedOutput], detail: str):
    with pytest.raises(InvalidArgument, match=detail):
        requested_outputs(client_request(good_inputs(), outputs), SIG)


def test_requested_output_in_shared_memory_is_refused():
    output = InferRequestedOutput("y")
    output.set_shared_memory("region0", 1024)
    with pytest.raises(InvalidArgument, match=r"'y'.*shared_memory_region"):
        requested_outputs(client_request(good_inputs(), [output]), SIG)


# --- responses and metadata ------------------------------------------------------------


def test_encode_response_fields_and_parameters():
    outputs = {"y": np.ones((2, 3), np.float32), "n": np.array(5, dtype=np.int64)}
    response = encode_response("m", "3", "req-9", outputs, {"variant": "int8"})
    assert (response.model_name, response.model_version, response.id) == ("m", "3", "req-9")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("y", "FP32", [2, 3]),
        ("n", "INT64", []),
    ]
    assert response.parameters["variant"].string_param == "int8"
    assert InferResult(response).as_numpy("n") == 5


def test_encode_non_contiguous_and_big_endian_arrays():
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    big = np.arange(4, dtype=">i8")
    response = encode_response("m", "1", "", {"t": base.T, "b": big})
    result = InferResult(response)
    np.testing.assert_array_equal(result.as_numpy("t"), base.T)
    assert response.outputs[1].datatype == "INT64"
    np.testing.assert_array_equal(result.as_numpy("b"), [0, 1, 2, 3])


def test_encode_refuses_dtypes_without_kserve_name():
    with pytest.raises(Internal, match="'s'"):
        encode_response("m", "1", "", {"s": np.array(["a"], dtype=np.str_)})


def test_tensor_metadata():
    meta = tensor_metadata(TensorSpec("x", "FP32", (-1, 4)))
    assert isinstance(meta, service_pb2.ModelMetadataResponse.TensorMetadata)
    assert (meta.name, meta.datatype, list(meta.shape)) == ("x", "FP32", [-1, 4])


# --- the whole path on a real session --------------------------------------------------


def test_tritonclient_request_through_ort_session_and_back(tmp_path):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from runtimes.onnxruntime_cpu import OnnxRuntimeCpu, session_options_from

    weight = np.random.default_rng(3).standard_normal((4, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[numpy_helper.from_array(weight, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "matmul.onnx"
    onnx.save(model, path)

    session = OnnxRuntimeCpu().load(path)
    x = np.random.default_rng(4).standard_normal((2, 4)).astype(np.float32)
    request = client_request([infer_input("x", x)], [InferRequestedOutput("y")])
    inputs = decode_inputs(request, session.signature)
    outputs = session.run(inputs, requested_outputs(request, session.signature))
    response = encode_response("m", "1", request.id, outputs)
    got = InferResult(service_pb2.ModelInferResponse.FromString(response.SerializeToString()))

    direct = ort.InferenceSession(
        str(path), sess_options=session_options_from(None), providers=["CPUExecutionProvider"]
    )
    assert response.id == "req-1"
    assert np.max(np.abs(got.as_numpy("y") - direct.run(["y"], {"x": x})[0])) <= 1e-6
