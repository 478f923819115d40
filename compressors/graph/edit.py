"""ONNX graph editing for the techniques that change a model's initializers directly.

prune.magnitude, low_rank.svd, cluster.kmeans and fold.batchnorm work on the ONNX graph with
numpy, no torch needed. They share what is here: finding the weight initializers of
Conv/MatMul/Gemm nodes, replacing initializers, naming new tensors and attributes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

# Op type -> index of its weight input. MatMul(X, W) and Gemm(A, B, C) keep the weight at 1.
WEIGHT_INPUT: dict[str, int] = {"Conv": 1, "MatMul": 1, "Gemm": 1}
WEIGHT_OPS = tuple(WEIGHT_INPUT)


@dataclass(frozen=True)
class WeightRef:
    """A float initializer used as the weight of one or more Conv/MatMul/Gemm nodes."""

    name: str
    op_type: str
    nodes: tuple[Any, ...]  # onnx.NodeProto, in graph order
    array: np.ndarray


def iter_nodes(graph: Any) -> Iterator[Any]:
    """Every node of `graph`, including those of subgraphs (If/Loop/Scan bodies)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                yield from iter_nodes(sub)


def consumers(graph: Any) -> dict[str, list[Any]]:
    """Tensor name -> the nodes (subgraphs included) that read it."""
    readers: dict[str, list[Any]] = {}
    for node in iter_nodes(graph):
        for name in node.input:
            if name:
                readers.setdefault(name, []).append(node)
    return readers


def initializer_arrays(graph: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {init.name: numpy_helper.to_array(init) for init in graph.initializer}


def weight_refs(graph: Any, op_types: Iterable[str]) -> tuple[list[WeightRef], list[dict]]:
    """Float initializers read only as the weight input of `op_types` nodes (top-level graph).

    Returns (weights, skipped): an initializer that something else also reads (a graph
    output, an Add, a subgraph) is skipped with a reason, since changing it would change
    that other use too.
    """
    wanted = set(op_types)
    arrays = initializer_arrays(graph)
    readers = consumers(graph)
    outputs = {o.name for o in graph.output}
    found: dict[str, WeightRef] = {}
    skipped: list[dict] = []
    for node in graph.node:
        index = WEIGHT_INPUT.get(node.op_type)
        if node.op_type not in wanted or index is None or len(node.input) <= index:
            continue
        name = node.input[index]
        array = arrays.get(name)
        if array is None or name in found or not np.issubdtype(array.dtype, np.floating):
            continue
        other = [n.op_type for n in readers[name] if not _reads_as_weight(n, name, wanted)]
        if other or name in outputs:
            skipped.append({"weight": name, "reason": f"also read by {other or ['outputs']}"})
            continue
        found[name] = WeightRef(name, node.op_type, tuple(readers[name]), array)
    return list(found.values()), skipped


def _reads_as_weight(node: Any, name: str, wanted: set[str]) -> bool:
    index = WEIGHT_INPUT.get(node.op_type)
    if node.op_type not in wanted or index is None:
        return False
    return [i for i, n in enumerate(node.input) if n == name] == [index]


def set_initializer(graph: Any, name: str, array: np.ndarray) -> None:
    """Replace (or add) initializer `name` with `array`."""
    from onnx import numpy_helper

    tensor = numpy_helper.from_array(np.ascontiguousarray(array), name)
    for init in graph.initializer:
        if init.name == name:
            init.CopyFrom(tensor)
            return
    graph.initializer.append(tensor)


def remove_unused_initializers(graph: Any) -> None:
    used = set(consumers(graph)) | {o.name for o in graph.output}
    keep = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def unique_name(graph: Any, base: str) -> str:
    """A tensor/node name not yet used anywhere in `graph`."""
    taken = {init.name for init in graph.initializer}
    taken |= {v.name for v in [*graph.input, *graph.output, *graph.value_info]}
    for node in iter_nodes(graph):
        taken.update(node.input)
        taken.update(node.output)
        taken.add(node.name)
    name, i = base, 0
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    return name


def get_attribute(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def set_attribute(node: Any, name: str, value: Any) -> None:
    from onnx import helper

    for i, attr in enumerate(node.attribute):
        if attr.name == name:
            del node.attribute[i]
            break
    node.attribute.append(helper.make_attribute(name, value))
