"""KServe v2 protobufs <-> numpy, validated at the boundary.

Requests are checked against the model's `Signature` before any array reaches a runtime;
every InvalidArgument names the tensor, what was expected and what was got. This is on
the inference hot path: data is converted with `np.frombuffer` / `np.fromiter`, never with
per-element Python loops. The messages are tritonclient's generated ones
(`tritonclient.grpc.service_pb2`), so an unmodified tritonclient talks to us byte for byte.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from tritonclient.grpc import service_pb2

from pareto_core.errors import Internal, InvalidArgument
from pareto_core.tensors import NUMPY_TO_KSERVE, Signature, TensorSpec

# Typed `contents` field carrying each datatype, and that field's wire dtype. FP16 has none.
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}
_FIELD_DTYPE: dict[str, np.dtype] = {
    "bool_contents": np.dtype(np.bool_),
    "int_contents": np.dtype(np.int32),
    "int64_contents": np.dtype(np.int64),
    "uint_contents": np.dtype(np.uint32),
    "uint64_contents": np.dtype(np.uint64),
    "fp32_contents": np.dtype(np.float32),
    "fp64_contents": np.dtype(np.float64),
}
_SHM_PARAMS = frozenset({"shared_memory_region", "shared_memory_byte_size", "shared_memory_offset"})


def decode_inputs(
    request: service_pb2.ModelInferRequest, signature: Signature
) -> dict[str, np.ndarray]:
    """The request's input tensors as numpy arrays (read-only views of the request bytes)."""
    return decode_tensors(request.inputs, signature, request.raw_input_contents)


def decode_tensors(
    tensors: Sequence[service_pb2.ModelInferRequest.InferInputTensor],
    signature: Signature,
    raw: Sequence[bytes | None] = (),
) -> dict[str, np.ndarray]:
    """`tensors` as numpy arrays; `raw` holds each tensor's raw bytes (gRPC's
    raw_input_contents: all or none), or None where a tensor carries typed contents (a
    REST request mixing JSON and binary tensors). A request sending a model's text input
    (`signature.text`) sends it alone: it comes back as a 1-D object array of bytes, one
    string per row, which the executor tokenizes."""
    text = signature.text
    if text is not None and any(t.name == text.name for t in tensors):
        return {text.name: _decode_text(tensors, text, raw)}
    specs = {spec.name: spec for spec in signature.inputs}
    _check_input_names(tensors, specs)
    shapes = [_check_header(tensor, specs[tensor.name]) for tensor in tensors]
    if raw and len(raw) != len(tensors):
        raise InvalidArgument(
            f"raw_input_contents has {len(raw)} entries but the request has "
            f"{len(tensors)} inputs; send raw data for every input or for none"
        )
    arrays: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(tensors):
        spec = specs[tensor.name]
        data = raw[index] if raw else None
        if data is not None:
            if tensor.HasField("contents"):
                raise InvalidArgument(
                    f"input {tensor.name!r} has typed contents while the request also uses "
                    "raw_input_contents; send every input one way"
                )
            arrays[tensor.name] = _from_raw(spec, shapes[index], data)
        else:
            arrays[tensor.name] = _from_contents(tensor, spec, shapes[index])
    return arrays


def _decode_text(
    tensors: Sequence[service_pb2.ModelInferRequest.InferInputTensor],
    spec: TensorSpec,
    raw: Sequence[bytes | None],
) -> np.ndarray:
    """The text input's strings (BYTES, shape [rows] or [rows, 1]), as bytes objects."""
    if len(tensors) != 1:
        others = [t.name for t in tensors if t.name != spec.name]
        raise InvalidArgument(
            f"input {spec.name!r} is sent alone: the gateway tokenizes it into the model's "
            f"inputs; drop {others}"
        )
    tensor = tensors[0]
    if tensor.datatype != "BYTES":
        raise InvalidArgument(
            f"input {spec.name!r}: expected datatype BYTES (UTF-8 strings), got {tensor.datatype!r}"
        )
    shape = tuple(tensor.shape)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 0:
        raise InvalidArgument(
            f"input {spec.name!r}: expected shape [rows] or [rows, 1] (one string per row), "
            f"got {list(shape)}"
        )
    data = raw[0] if raw else None
    if data is not None:
        values = _split_bytes(spec.name, data)
    else:
        values = list(tensor.contents.bytes_contents)
    if len(values) != shape[0]:
        raise InvalidArgument(
            f"input {spec.name!r}: shape {list(shape)} needs {shape[0]} strings, got {len(values)}"
        )
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _split_bytes(name: str, data: bytes) -> list[bytes]:
    """KServe's serialized BYTES tensor: each element as a 4-byte little-endian length and
    that many bytes."""
    values, offset = [], 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise InvalidArgument(f"input {name!r}: BYTES raw data ends inside a length prefix")
        size = int.from_bytes(data[offset : offset + 4], "little")
        offset += 4
        if offset + size > len(data):
            raise InvalidArgument(
                f"input {name!r}: BYTES element of {size} bytes runs past the end of the data"
            )
        values.append(bytes(data[offset : offset + size]))
        offset += size
    return values


def _check_input_names(
    tensors: Sequence[service_pb2.ModelInferRequest.InferInputTensor],
    specs: dict[str, TensorSpec],
) -> None:
    expected = list(specs)
    seen: set[str] = set()
    for tensor in tensors:
        if tensor.name not in specs:
            raise InvalidArgument(
                f"unknown input {tensor.name!r}; the model expects inputs {expected}"
            )
        if tensor.name in seen:
            raise InvalidArgument(f"input {tensor.name!r} appears more than once in the request")
        seen.add(tensor.name)
    missing = [name for name in expected if name not in seen]
    if missing:
        raise InvalidArgument(f"missing inputs {missing}; the model expects inputs {expected}")


def _check_header(
    tensor: service_pb2.ModelInferRequest.InferInputTensor, spec: TensorSpec
) -> tuple[int, ...]:
    """Datatype, shape and parameters of one input; returns its shape as a tuple."""
    name = tensor.name
    shm = _SHM_PARAMS.intersection(tensor.parameters)
    if shm:
        raise InvalidArgument(
            f"input {name!r} uses shared memory ({sorted(shm)}), which is not supported; "
            "send the data in raw_input_contents"
        )
    if tensor.datatype == "BYTES":
        raise InvalidArgument(
            f"input {name!r}: datatype BYTES is not supported (expected {spec.datatype})"
        )
    if tensor.datatype != spec.datatype:
        raise InvalidArgument(
            f"input {name!r}: expected datatype {spec.datatype}, got {tensor.datatype!r}"
        )
    shape = tuple(tensor.shape)
    if any(d < 0 for d in shape):
        raise InvalidArgument(f"input {name!r}: shape {list(shape)} has a negative dimension")
    if len(shape) != len(spec.shape) or any(
        want >= 0 and got != want for got, want in zip(shape, spec.shape, strict=True)
    ):
        raise InvalidArgument(
            f"input {name!r}: expected shape {list(spec.shape)} (-1 = any size), got {list(shape)}"
        )
    return shape


def _from_raw(spec: TensorSpec, shape: tuple[int, ...], data: bytes) -> np.ndarray:
    dtype = spec.numpy_dtype.newbyteorder("<")  # KServe raw tensors are little endian
    count = math.prod(shape)
    if len(data) != count * dtype.itemsize:
        raise InvalidArgument(
            f"input {spec.name!r}: shape {list(shape)} of {spec.datatype} needs "
            f"{count * dtype.itemsize} bytes of raw_input_contents, got {len(data)}"
        )
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    if spec.datatype == "BOOL" and count and array.view(np.uint8).max() > 1:
        raise InvalidArgument(f"input {spec.name!r}: BOOL raw bytes must be 0 or 1")
    return array


def _from_contents(
    tensor: service_pb2.ModelInferRequest.InferInputTensor,
    spec: TensorSpec,
    shape: tuple[int, ...],
) -> np.ndarray:
    field = CONTENTS_FIELD.get(spec.datatype)
    if field is None:
        raise InvalidArgument(
            f"input {spec.name!r}: {spec.datatype} data can only be sent in raw_input_contents"
        )
    others = [f.name for f, _ in tensor.contents.ListFields() if f.name != field]
    if others:
        raise InvalidArgument(
            f"input {spec.name!r}: {spec.datatype} data belongs in contents.{field}, got {others}"
        )
    values = getattr(tensor.contents, field)
    count = math.prod(shape)
    if len(values) != count:
        raise InvalidArgument(
            f"input {spec.name!r}: shape {list(shape)} needs {count} elements, "
            f"contents.{field} has {len(values)}"
        )
    wire = np.fromiter(values, dtype=_FIELD_DTYPE[field], count=count)
    return _narrow(spec, wire).reshape(shape)


def _narrow(spec: TensorSpec, wire: np.ndarray) -> np.ndarray:
    """Cast int_contents/uint_contents to 8/16-bit types, refusing values that do not fit."""
    target = spec.numpy_dtype
    if wire.dtype == target:
        return wire
    info = np.iinfo(target)
    if wire.size and (wire.min() < info.min or wire.max() > info.max):
        raise InvalidArgument(
            f"input {spec.name!r}: {spec.datatype} values must lie in [{info.min}, {info.max}], "
            f"got values in [{wire.min()}, {wire.max()}]"
        )
    return wire.astype(target)


def requested_outputs(
    request: service_pb2.ModelInferRequest, signature: Signature
) -> list[str] | None:
    """Names of the requested outputs in request order, or None when all are wanted."""
    if not request.outputs:
        return None
    known = [spec.name for spec in signature.outputs]
    names: list[str] = []
    for output in request.outputs:
        if output.name not in known:
            raise InvalidArgument(
                f"unknown requested output {output.name!r}; the model has outputs {known}"
            )
        if output.name in names:
            raise InvalidArgument(f"output {output.name!r} is requested more than once")
        unsupported = sorted(_SHM_PARAMS.union({"classification"}).intersection(output.parameters))
        if unsupported:
            raise InvalidArgument(
                f"requested output {output.name!r}: parameters {unsupported} are not supported"
            )
        names.append(output.name)
    return names


def output_tensor(name: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    """An output's KServe datatype and its data as a little-endian array (its bytes are
    `array.tobytes(order="C")`)."""
    array = np.asarray(value)
    datatype = NUMPY_TO_KSERVE.get(array.dtype.newbyteorder("="))
    if datatype is None:
        raise Internal(f"output {name!r} has numpy dtype {array.dtype}, no KServe datatype")
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return datatype, array


def encode_response(
    model_name: str,
    model_version: str,
    request_id: str,
    outputs: dict[str, np.ndarray],
    parameters: dict[str, str] | None = None,
) -> service_pb2.ModelInferResponse:
    """A response carrying every output as raw little-endian C-order bytes."""
    response = service_pb2.ModelInferResponse(
        model_name=model_name, model_version=model_version, id=request_id
    )
    for name, value in outputs.items():
        datatype, array = output_tensor(name, value)
        response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        response.raw_output_contents.append(array.tobytes(order="C"))
    for key, text in (parameters or {}).items():
        response.parameters[key].string_param = text
    return response


def tensor_metadata(spec: TensorSpec) -> service_pb2.ModelMetadataResponse.TensorMetadata:
    return service_pb2.ModelMetadataResponse.TensorMetadata(
        name=spec.name, datatype=spec.datatype, shape=list(spec.shape)
    )
