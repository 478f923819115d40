"""SmoothQuant (Xiao et al., 2023) for quantize.static: activation outliers moved into weights.

Transformer activations carry a few channels far larger than the rest; one uint8 scale per
tensor then spends its range on them. For a linear layer y = x W the product does not
change when input channel j of x is divided by s_j and row j of W multiplied by it, so the
outliers can be flattened at the cost of slightly larger weights (quantized per output
channel, which absorbs that well). Per channel, from the calibration data:

    s_j = max|x_j| ** alpha / max|W_j| ** (1 - alpha)

alpha 0 leaves the activations alone, 1 moves all of their range into the weights. The
layers reading one tensor (Q, K and V read the same LayerNorm output) share one s.

Where the division goes: into the LayerNormalization producing x (its scale and bias)
when nothing else reads its output, the case of pre-norm transformers; otherwise (the
post-norm BERT family, where the LayerNorm output is also the residual; a GELU output) into
a Mul by 1/s in front of the layers, which ONNX Runtime runs in a few microseconds.
Statistics skip padding tokens (see `compressors.graph.taps`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compressors.graph.edit import consumers, initializer_arrays, set_initializer, unique_name
from compressors.graph.taps import collect_rows

_MIN_SCALE, _MAX_SCALE = 1e-4, 1e4


@dataclass
class Group:
    """The linear layers reading one activation, and their weights (as x @ W: [in, out])."""

    tensor: str
    nodes: list[Any] = field(default_factory=list)
    weights: list[np.ndarray] = field(default_factory=list)


def _weight(node: Any, arrays: dict[str, np.ndarray]) -> np.ndarray | None:
    """The weight of a MatMul/Gemm as [in, out], or None when it is not a 2-D initializer
    or the Gemm transposes its activation."""
    from compressors.graph.edit import get_attribute

    array = arrays.get(node.input[1]) if len(node.input) > 1 else None
    if array is None or array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
        return None
    if node.op_type == "Gemm":
        if get_attribute(node, "transA", 0):
            return None
        return array.T if get_attribute(node, "transB", 0) else array
    return array


def groups_of(model: Any, layers: set[str]) -> tuple[list[Group], list[dict[str, str]]]:
    """The `layers` grouped by the activation they read; groups whose weights are also read
    elsewhere are skipped (with the reason): scaling them would change the other reader."""
    graph = model.graph
    arrays, readers = initializer_arrays(graph), consumers(graph)
    groups: dict[str, Group] = {}
    for node in graph.node:
        weight = _weight(node, arrays) if node.name in layers else None
        if weight is not None:
            group = groups.setdefault(node.input[0], Group(node.input[0]))
            group.nodes.append(node)
            group.weights.append(weight)
    kept, skipped = [], []
    for group in groups.values():
        shared = [n.input[1] for n in group.nodes if len(readers.get(n.input[1], [])) > 1]
        if shared:
            skipped.append({"tensor": group.tensor, "reason": f"weights {shared} are shared"})
        else:
            kept.append(group)
    return kept, skipped


def channel_absmax(
    model_path: Path, groups: list[Group], feeds: dict[str, np.ndarray], work_dir: Path, **run: Any
) -> dict[str, np.ndarray]:
    """max |x_j| over the calibration data, per input channel of every group."""
    maxima: dict[str, np.ndarray] = {}

    def update(name: str, rows: np.ndarray) -> None:
        batch_max = np.abs(rows).max(axis=0) if len(rows) else np.zeros(rows.shape[1])
        maxima[name] = np.maximum(maxima[name], batch_max) if name in maxima else batch_max

    collect_rows(model_path, [g.tensor for g in groups], feeds, update, work_dir, **run)
    return maxima


def smoothing_scales(absmax: np.ndarray, weights: list[np.ndarray], alpha: float) -> np.ndarray:
    """s_j (see the module docstring); 1 for channels that are zero in x or in W."""
    wmax = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
    ok = (absmax > 0) & (wmax > 0)
    scales = np.ones_like(absmax)
    scales[ok] = absmax[ok] ** alpha / wmax[ok] ** (1.0 - alpha)
    return np.clip(scales, _MIN_SCALE, _MAX_SCALE)


def _scale_weights(graph: Any, group: Group, scales: np.ndarray) -> None:
    from compressors.graph.edit import get_attribute

    for node, weight in zip(group.nodes, group.weights, strict=True):
        scaled = (weight * scales[:, None]).astype(weight.dtype)
        transposed = node.op_type == "Gemm" and get_attribute(node, "transB", 0)
        set_initializer(graph, node.input[1], scaled.T if transposed else scaled)


def _foldable_layernorm(
    graph: Any, group: Group, arrays: dict[str, np.ndarray], readers: dict[str, list[Any]]
) -> Any | None:
    """The LayerNormalization producing the group's input when only the group reads it and
    its scale and bias are initializers of its own, else None."""
    producer = next((n for n in graph.node if group.tensor in n.output), None)
    if producer is None or producer.op_type != "LayerNormalization":
        return None
    if {n.name for n in readers.get(group.tensor, [])} != {n.name for n in group.nodes}:
        return None
    if any(o.name == group.tensor for o in graph.output):
        return None
    params = list(producer.input[1:3])
    if not all(p in arrays and len(readers.get(p, [])) == 1 for p in params):
        return None
    return producer


def _divide_input(
    graph: Any,
    group: Group,
    scales: np.ndarray,
    arrays: dict[str, np.ndarray],
    readers: dict[str, list[Any]],
) -> str:
    """Divide the group's input by `scales`: folded into a LayerNormalization (returns "")
    or as a Mul (returns its name). `arrays` and `readers` are the graph's before any group
    was smoothed."""
    norm = _foldable_layernorm(graph, group, arrays, readers)
    if norm is not None:
        for name in norm.input[1:3]:
            set_initializer(graph, name, (arrays[name] / scales).astype(arrays[name].dtype))
        return ""
    from onnx import helper

    inverse = unique_name(graph, f"{group.tensor}_smooth_scale")
    smoothed = unique_name(graph, f"{group.tensor}_smoothed")
    set_initializer(graph, inverse, (1.0 / scales).astype(group.weights[0].dtype))
    mul = helper.make_node("Mul", [group.tensor, inverse], [smoothed], name=smoothed + "_Mul")
    names = {n.name for n in group.nodes}
    first = next(i for i, n in enumerate(graph.node) if n.name in names)
    for node in group.nodes:
        node.input[0] = smoothed
    graph.node.insert(first, mul)
    return str(mul.name)


def smooth(
    model_path: Path,
    dst: Path,
    layers: set[str],
    alpha: float,
    absmax_of: Callable[[list[Group]], dict[str, np.ndarray]],
) -> dict[str, Any]:
    """Write the smoothed copy of `model_path` to `dst`; `absmax_of(groups)` measures the
    activations (see `channel_absmax`). Returns the report; its "mul_nodes" are the names of
    the Muls inserted (to keep float)."""
    import onnx

    from compressors.graph.files import load_model

    model = load_model(model_path)
    groups, skipped = groups_of(model, layers)
    absmax = absmax_of(groups) if groups else {}
    muls: list[str] = []
    arrays, readers = initializer_arrays(model.graph), consumers(model.graph)
    for group in groups:
        scales = smoothing_scales(absmax[group.tensor], group.weights, alpha)
        _scale_weights(model.graph, group, scales)
        mul = _divide_input(model.graph, group, scales, arrays, readers)
        muls += [mul] if mul else []
    onnx.save(model, str(dst))
    return {
        "alpha": alpha,
        "layers": sum(len(g.nodes) for g in groups),
        "inputs": len(groups),
        "folded_into_layernorm": len(groups) - len(muls),
        "mul_inserted": len(muls),
        "skipped": skipped,
        "mul_nodes": muls,
    }
