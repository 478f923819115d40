"""REST inference bodies: JSON and binary tensors become the gRPC request's tensors, which
kserve_codec checks with its own messages; outputs go back as JSON or binary data."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from pareto_core.errors import InvalidArgument
from pareto_core.tensors import Signature, TensorSpec
from service.rest import codec
from service.rest.errors import PayloadTooLarge
from service.rest.json_views import message_json

SIGNATURE = Signature(
    inputs=(TensorSpec("x", "FP32", (-1, 2)), TensorSpec("n", "INT8", (-1, 2))),
    outputs=(TensorSpec("y", "FP32", (-1, 2)),),
)


def body(inputs: list[dict], **extra: object) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


def test_nested_json_data_and_binary_data_mix():
    x = np.array([[1.5, 2.0], [3.0, 4.0]], np.float32)
    header = body(
        [
            {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": x.tolist()},
            {
                "name": "n",
                "datatype": "INT8",
                "shape": [2, 2],
                "parameters": {"binary_data_size": 4},
            },
        ],
        outputs=[{"name": "y", "parameters": {"binary_data": True}}],
    )
    request = codec.parse(header + bytes([1, 2, 3, 4]), str(len(header)))
    inputs, wanted = request.decode(SIGNATURE)
    np.testing.assert_array_equal(inputs["x"], x)
    np.testing.assert_array_equal(inputs["n"], np.array([[1, 2], [3, 4]], np.int8))
    assert wanted == ["y"] and request.binary == {"y": True}


def test_codec_checks_apply_with_their_messages():
    values = {"name": "n", "datatype": "INT8", "shape": [1, 2], "data": [1, 300]}
    request = codec.parse(
        body([{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [0, 0]}, values]), None
    )
    with pytest.raises(InvalidArgument, match=r"INT8 values must lie in \[-128, 127\]"):
        request.decode(SIGNATURE)
    n = {"name": "n", "datatype": "INT8", "shape": [1, 2], "data": [1, 2]}
    short = body([{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1]}, n])
    with pytest.raises(InvalidArgument, match="needs 2 elements"):
        codec.parse(short, None).decode(SIGNATURE)


@pytest.mark.parametrize(
    ("text", "length", "needle"),
    [
        (b'{"inputs": {}}', None, "inputs must be a JSON array"),
        (b'{"inputs": [{"name": 1}]}', None, "inputs[0].name must be a string"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "data": [[1], 2]}]}', None, "unevenly"),
        (b"{}", "9", "within the body"),
        (b"{}", "x", "within the body"),
        (b'{"parameters": {"timeout": 1e400}}', None, "boolean, number or string"),
        (b'{"parameters": {"timeout": {}}}', None, "boolean, number or string"),
    ],
)
def test_malformed_requests(text, length, needle):
    with pytest.raises(InvalidArgument) as err:
        codec.parse(text, length)
    assert needle in str(err.value)


def test_decompression_is_bounded():
    data = b'{"inputs": []}'
    assert codec.decompress(gzip.compress(data), "gzip", 100) == data
    with pytest.raises(PayloadTooLarge):
        codec.decompress(gzip.compress(b" " * 1000), "gzip", 100)
    with pytest.raises(InvalidArgument, match="br"):
        codec.decompress(data, "br", 100)
    with pytest.raises(InvalidArgument, match="does not decompress"):
        codec.decompress(b"not gzip", "gzip", 100)


def test_timeout_and_route_key_parameters():
    request = codec.parse(b'{"parameters": {"timeout": 2500000, "pareto-route-key": "u1"}}', None)
    assert request.timeout_s() == 2.5
    assert request.route_key("from-header") == "u1"
    assert codec.parse(b"{}", None).route_key("from-header") == "from-header"


def test_int64_fields_are_json_numbers():
    from tritonclient.grpc import service_pb2 as pb

    message = pb.ModelMetadataResponse(name="m", versions=["1"])
    message.inputs.add(name="x", datatype="FP32", shape=[-1, 8])
    stats = pb.ModelStatistics(name="m", inference_count=7)
    assert message_json(message)["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 8]}]
    assert message_json(stats)["inference_count"] == 7
