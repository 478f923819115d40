"""The text input in the shared KServe codec: strings as gRPC raw BYTES (4-byte length
prefixes, as tritonclient serializes them) or bytes_contents, checked for shape, datatype
and being sent alone; decoded rows are bytes, tokenized later by the executor."""

from __future__ import annotations

import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import serialize_byte_tensor

from pareto_core.errors import InvalidArgument
from pareto_core.tensors import Signature, TensorSpec, text_input
from service.api import kserve_codec

TOKENS = (
    TensorSpec("input_ids", "INT64", (-1, -1)),
    TensorSpec("attention_mask", "INT64", (-1, -1)),
)
SIGNATURE = Signature(
    TOKENS, (TensorSpec("sentence_embedding", "FP32", (-1, 384)),), text_input("text")
)
ROWS = [b"hello", "caf\u00e9".encode(), b""]


def request(datatype: str = "BYTES", shape: tuple[int, ...] = (3,), raw: bool = True):
    message = pb.ModelInferRequest(model_name="m")
    tensor = message.inputs.add(name="text", datatype=datatype, shape=list(shape))
    if raw:
        message.raw_input_contents.append(
            serialize_byte_tensor(np.array(ROWS, dtype=object)).item()
        )
    else:
        tensor.contents.bytes_contents.extend(ROWS)
    return message


@pytest.mark.parametrize("raw", [True, False])
def test_strings_decode_to_rows_of_bytes(raw: bool) -> None:
    got = kserve_codec.decode_inputs(request(raw=raw), SIGNATURE)
    assert list(got) == ["text"] and list(got["text"]) == ROWS
    assert (
        list(kserve_codec.decode_inputs(request(shape=(3, 1), raw=raw), SIGNATURE)["text"]) == ROWS
    )


@pytest.mark.parametrize(
    ("message", "pattern"),
    [
        (request(datatype="INT64"), "expected datatype BYTES"),
        (request(shape=(2,)), "needs 2 strings, got 3"),
        (request(shape=(1, 3)), "expected shape \\[rows\\] or \\[rows, 1\\]"),
    ],
)
def test_bad_text_requests_name_the_input(message, pattern: str) -> None:
    with pytest.raises(InvalidArgument, match=pattern):
        kserve_codec.decode_inputs(message, SIGNATURE)


def test_text_goes_alone_and_a_truncated_length_prefix_is_refused() -> None:
    message = request()
    message.inputs.add(name="input_ids", datatype="INT64", shape=[1, 1])
    message.raw_input_contents.append(np.zeros(1, np.int64).tobytes())
    with pytest.raises(InvalidArgument, match="is sent alone"):
        kserve_codec.decode_inputs(message, SIGNATURE)
    broken = request()
    broken.raw_input_contents[0] = broken.raw_input_contents[0][:-3] + b"\x01"
    with pytest.raises(InvalidArgument, match="'text'"):
        kserve_codec.decode_inputs(broken, SIGNATURE)


def test_a_model_without_text_refuses_bytes_as_before() -> None:
    plain = Signature(TOKENS, SIGNATURE.outputs)
    with pytest.raises(InvalidArgument, match="unknown input 'text'"):
        kserve_codec.decode_inputs(request(), plain)
