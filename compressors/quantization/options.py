"""What the quantization techniques share: config field types, checks of op types and node
names against the graph being quantized, and the list of weighted nodes.

Op types are checked against ONNX Runtime's quantizer registries at apply time (importing
them here would make every technique module heavy).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, StringConstraints

from pareto_core.errors import InvalidArgument

OpType = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", max_length=64)]
NodeName = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


def _power_of_two(value: int) -> int:
    if value & (value - 1):
        raise ValueError(f"must be a power of two (16, 32, 64, ...), got {value}")
    return value


# Block sizes of block-wise quantization (MatMulNBits, GatherBlockQuantized); the range is
# the field's own.
PowerOfTwo = Annotated[int, AfterValidator(_power_of_two)]

# Which registry of onnxruntime.quantization.registry says what a quantization mode handles.
_REGISTRIES = {
    "dynamic": ("IntegerOpsRegistry",),
    "qdq": ("QLinearOpsRegistry", "QDQRegistry"),  # what quantize_static takes by default
    "qoperator": ("QLinearOpsRegistry",),
}


def quantizable_ops(mode: str) -> set[str]:
    """Op types ONNX Runtime can quantize in `mode` ("dynamic", "qdq", "qoperator")."""
    from onnxruntime.quantization import registry

    return {op for name in _REGISTRIES[mode] for op in getattr(registry, name)}


def check_op_types(op_types: tuple[str, ...], mode: str, field: str) -> list[str] | None:
    """`op_types` as ORT wants them (None = every type it can quantize), or InvalidArgument
    naming the field and the op types this mode supports."""
    if not op_types:
        return None
    supported = quantizable_ops(mode)
    unknown = sorted(set(op_types) - supported)
    if unknown:
        raise InvalidArgument(
            f"{field}: {unknown} cannot be quantized in {mode} mode; supported: {sorted(supported)}"
        )
    return list(op_types)


def check_nodes(model: Any, names: tuple[str, ...], field: str, hint: str = "") -> list[str]:
    """`names` if every one is a node of `model`, else InvalidArgument naming the field."""
    present = {node.name for node in model.graph.node}
    missing = [name for name in names if name not in present]
    if missing:
        examples = sorted(present)[:5]
        raise InvalidArgument(
            f"{field}: no node named {missing} in the graph being quantized{hint} "
            f"(it has {len(present)} nodes, e.g. {examples})"
        )
    return list(names)


def weighted_nodes(model: Any, op_types: set[str]) -> list[dict[str, Any]]:
    """Nodes of `op_types` that read a float weight (an initializer of rank >= 2), in graph
    order, as {"node", "op_type", "params"}: what quantization actually changes."""
    shapes = {init.name: list(init.dims) for init in model.graph.initializer if init.data_type == 1}
    found = []
    for node in model.graph.node:
        weights = [shapes[name] for name in node.input if len(shapes.get(name, [])) >= 2]
        if node.op_type in op_types and weights and node.name:
            params = sum(_product(shape) for shape in weights)
            found.append({"node": node.name, "op_type": node.op_type, "params": params})
    return found


def _product(shape: list[int]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total
