"""KServe v2 REST inference bodies <-> the gRPC request messages and numpy.

A request body is JSON, or JSON followed by binary tensor data (Triton's binary tensor data
extension: the `Inference-Header-Content-Length` header gives the JSON's length, an input
with parameter `binary_data_size` takes that many bytes of the rest, in input order). It
is turned into the same `ModelInferRequest` tensors the gRPC port receives (JSON `data` as
typed contents, binary data as raw bytes), so `service/api/kserve_codec.py` checks both
with the same rules and the same messages. Outputs go back as JSON `data`, or as binary
data when the request asks (`binary_data_output`, or an output's `binary_data`).
"""

from __future__ import annotations

import itertools
import json
import math
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tritonclient.grpc import service_pb2 as pb

from pareto_core.errors import InvalidArgument
from pareto_core.tensors import Signature
from service.api import kserve_codec
from service.deployments.router import ROUTE_KEY
from service.rest.errors import PayloadTooLarge
from service.serving.executor import InferResult, Inputs

HEADER_LENGTH = "inference-header-content-length"
BINARY_SIZE = "binary_data_size"
_INT64_MAX = (1 << 63) - 1
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


@dataclass
class InferRequest:
    """One parsed REST inference request: the gRPC message (inputs, outputs, parameters)
    and each input's binary data (None for JSON data)."""

    message: pb.ModelInferRequest
    raw: list[bytes | None] = field(default_factory=list)
    binary_output: bool = False  # the request's `binary_data_output`
    binary: dict[str, bool] = field(default_factory=dict)  # per requested output

    def decode(self, signature: Signature) -> tuple[Inputs, list[str] | None]:
        """The data plane's decode callback: validated inputs, the outputs asked for."""
        inputs = kserve_codec.decode_tensors(self.message.inputs, signature, self.raw)
        return inputs, kserve_codec.requested_outputs(self.message, signature)

    def route_key(self, header: str | None) -> str:
        if ROUTE_KEY in self.message.parameters:
            return str(self.message.parameters[ROUTE_KEY].string_param)
        return header or ""

    def timeout_s(self) -> float | None:
        """Triton's `timeout` request parameter (microseconds), as seconds."""
        if "timeout" not in self.message.parameters:
            return None
        micros = self.message.parameters["timeout"].int64_param
        return micros / 1e6 if micros > 0 else None


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """`body` as sent with Content-Encoding `encoding` (gzip, deflate or none), unpacked to
    at most `limit` bytes."""
    if not encoding or encoding == "identity":
        return body
    wbits = _WBITS.get(encoding.lower())
    if wbits is None:
        raise InvalidArgument(
            f"Content-Encoding {encoding[:40]!r} is not supported (gzip, deflate)"
        )
    unpacker = zlib.decompressobj(wbits)
    try:
        data = unpacker.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidArgument(f"the {encoding} request body does not decompress: {exc}") from None
    if len(data) > limit:
        raise PayloadTooLarge(
            f"the request body decompresses to more than {limit} bytes (PARETO_HTTP_MAX_BODY_BYTES)"
        )
    return data


def parse(body: bytes, header_length: str | None) -> InferRequest:
    """The request in `body`; `header_length`: the Inference-Header-Content-Length header."""
    length = _header_length(header_length, len(body))
    header = _json_object(body[:length])
    message = pb.ModelInferRequest(id=_text(header.get("id", ""), "id"))
    _parameters(message.parameters, header.get("parameters"), "parameters")
    request = InferRequest(message)
    request.binary_output = _flag(message.parameters, "binary_data_output")
    tail, offset = memoryview(body)[length:], 0
    for index, spec in enumerate(_list(header.get("inputs", []), "inputs")):
        size = _add_input(message, _dict(spec, f"inputs[{index}]"), index)
        if size is None:
            request.raw.append(None)
            continue
        if offset + size > len(tail):
            raise InvalidArgument(
                f"inputs[{index}] declares {BINARY_SIZE} {size} but only "
                f"{len(tail) - offset} bytes of binary data remain in the body"
            )
        request.raw.append(bytes(tail[offset : offset + size]))
        offset += size
    if offset != len(tail):
        raise InvalidArgument(
            f"the body has {len(tail) - offset} bytes after the JSON header and the inputs' "
            f"{BINARY_SIZE}; check Inference-Header-Content-Length"
        )
    for index, spec in enumerate(_list(header.get("outputs", []), "outputs")):
        output = _dict(spec, f"outputs[{index}]")
        name = _text(output.get("name"), f"outputs[{index}].name")
        added = message.outputs.add(name=name)
        _parameters(added.parameters, output.get("parameters"), f"outputs[{index}].parameters")
        if "binary_data" in added.parameters:
            request.binary[name] = _flag(added.parameters, "binary_data")
    return request


def optional_json_object(body: bytes) -> dict[str, Any]:
    """The JSON object of a body that may be empty (repository calls)."""
    return _json_object(body) if body.strip() else {}


def _header_length(value: str | None, body_length: int) -> int:
    if value is None:
        return body_length
    try:
        length = int(value)
    except ValueError:
        length = -1
    if not 0 <= length <= body_length:
        raise InvalidArgument(
            f"Inference-Header-Content-Length must be a byte count within the body "
            f"({body_length} bytes), got {value[:40]!r}"
        )
    return length


def _json_object(data: bytes | memoryview) -> dict[str, Any]:
    try:
        value = json.loads(bytes(data))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"the request's JSON does not parse: {exc}") from None
    return _dict(value, "the request")


def _add_input(message: pb.ModelInferRequest, spec: dict[str, Any], index: int) -> int | None:
    """Add input `spec` to `message`; its binary data size, or None when it has JSON data."""
    where = f"inputs[{index}]"
    shape = _list(spec.get("shape", []), f"{where}.shape")
    if not all(type(d) is int and abs(d) <= _INT64_MAX for d in shape):
        raise InvalidArgument(f"{where}.shape must be a list of integers, got {str(shape)[:80]}")
    tensor = message.inputs.add(
        name=_text(spec.get("name"), f"{where}.name"),
        datatype=_text(spec.get("datatype"), f"{where}.datatype"),
        shape=shape,
    )
    _parameters(tensor.parameters, spec.get("parameters"), f"{where}.parameters")
    if "data" in spec:
        _set_contents(tensor, spec["data"])
    if BINARY_SIZE not in tensor.parameters:
        return None
    size = tensor.parameters[BINARY_SIZE].int64_param
    if tensor.parameters[BINARY_SIZE].WhichOneof("parameter_choice") != "int64_param" or size < 0:
        raise InvalidArgument(f"{where}.parameters.{BINARY_SIZE} must be a byte count")
    return size


def _set_contents(tensor: pb.ModelInferRequest.InferInputTensor, data: Any) -> None:
    """JSON `data` (flat or nested row-major lists) into the typed contents field of the
    tensor's datatype; kserve_codec checks counts, ranges and the datatype itself."""
    if tensor.datatype == "BYTES":  # strings: a text input (kserve_codec checks the rest)
        _set_strings(tensor, data)
        return
    target = kserve_codec.CONTENTS_FIELD.get(tensor.datatype)
    if target is None:  # FP16, unknown: kserve_codec says what is wrong
        return
    values = _flatten(data if isinstance(data, list) else [data])
    try:
        getattr(tensor.contents, target).extend(values)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(
            f"input {tensor.name!r}: data must hold {tensor.datatype} values ({exc})"
        ) from None


def _set_strings(tensor: pb.ModelInferRequest.InferInputTensor, data: Any) -> None:
    values = _flatten(data if isinstance(data, list) else [data])
    if not all(isinstance(v, str) for v in values):
        raise InvalidArgument(f"input {tensor.name!r}: BYTES data must be JSON strings")
    tensor.contents.bytes_contents.extend(v.encode("utf-8", "surrogatepass") for v in values)


def _flatten(values: list[Any]) -> list[Any]:
    while values and isinstance(values[0], list):
        if not all(isinstance(v, list) for v in values):
            raise InvalidArgument("data nests lists unevenly")
        values = list(itertools.chain.from_iterable(values))
    return values


def _parameters(target: Any, given: Any, where: str) -> None:
    """A JSON parameters object into a map of InferParameter."""
    for key, value in _dict(given or {}, where).items():
        parameter = target[key]
        if isinstance(value, bool):
            parameter.bool_param = value
        elif isinstance(value, int) and abs(value) <= _INT64_MAX:
            parameter.int64_param = value
        elif isinstance(value, float) and math.isfinite(value):
            parameter.double_param = value
        elif isinstance(value, str):
            parameter.string_param = value
        else:
            raise InvalidArgument(f"{where}.{key[:80]} must be a boolean, number or string")


def _flag(parameters: Any, key: str) -> bool:
    return key in parameters and bool(parameters[key].bool_param)


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument(f"{where} must be a JSON object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidArgument(f"{where} must be a JSON array")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{where} must be a string")
    return value


def encode(model_name: str, request: InferRequest, result: InferResult) -> tuple[bytes, int | None]:
    """The response body, and the length of its JSON part when binary data follows."""
    outputs, tail = [], []
    for name, value in result.outputs.items():
        datatype, array = kserve_codec.output_tensor(name, value)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if request.binary.get(name, request.binary_output):
            data = array.tobytes(order="C")
            entry["parameters"] = {BINARY_SIZE: len(data)}
            tail.append(data)
        else:
            entry["data"] = np.ravel(array).tolist()
        outputs.append(entry)
    response: dict[str, Any] = {"model_name": model_name, "model_version": result.servable.version}
    if request.message.id:
        response["id"] = request.message.id
    response["parameters"] = {
        "pareto_runtime": result.runtime,
        "pareto_variant": result.servable.variant_label,
    }
    response["outputs"] = outputs
    text = json.dumps(response, separators=(",", ":")).encode()
    return (b"".join([text, *tail]), len(text)) if tail else (text, None)
