"""Read a model's signature from an ONNX graph (onnx is imported lazily)."""

from __future__ import annotations

from typing import Any

from pareto_core.errors import InvalidArgument
from pareto_core.tensors import Signature, TensorSpec

# ONNX TensorProto.DataType value -> KServe v2 datatype (values fixed by the ONNX spec).
ONNX_TO_KSERVE: dict[int, str] = {
    1: "FP32",
    2: "UINT8",
    3: "INT8",
    4: "UINT16",
    5: "INT16",
    6: "INT32",
    7: "INT64",
    9: "BOOL",
    10: "FP16",
    11: "FP64",
    12: "UINT32",
    13: "UINT64",
}


def onnx_signature(model: Any) -> Signature:
    """Graph inputs that are not initializers, and graph outputs, as TensorSpecs."""
    graph = model.graph
    constants = {t.name for t in graph.initializer}
    constants |= {t.values.name for t in graph.sparse_initializer}
    inputs = tuple(_spec(v, "input") for v in graph.input if v.name not in constants)
    outputs = tuple(_spec(v, "output") for v in graph.output)
    return Signature(inputs, outputs)


def _spec(value_info: Any, kind: str) -> TensorSpec:
    import onnx

    name = value_info.name
    if value_info.type.WhichOneof("value") != "tensor_type":
        raise InvalidArgument(f"{kind} {name!r} is not a tensor; only tensors can be served")
    tensor_type = value_info.type.tensor_type
    datatype = ONNX_TO_KSERVE.get(tensor_type.elem_type)
    if datatype is None:
        elem = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
        raise InvalidArgument(f"{kind} {name!r} has element type {elem}, which cannot be served")
    if not tensor_type.HasField("shape"):
        raise InvalidArgument(f"{kind} {name!r} has no shape (unknown rank); give it a rank")
    shape = tuple(
        d.dim_value if d.WhichOneof("value") == "dim_value" else -1 for d in tensor_type.shape.dim
    )
    return TensorSpec(name, datatype, shape)
