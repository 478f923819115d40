"""Transformer graphs: detect self-attention, read (heads, hidden size), and run ONNX
Runtime's transformer optimizer (`onnxruntime.transformers.optimizer`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from compressors.graph.files import load_model
from pareto_core.errors import FailedPrecondition

# Element-wise ops that may sit between the scores MatMul (Q @ K^T) and its Softmax.
_SCORE_PATH_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Where", "Cast"})
_MAX_HOPS = 4


def _producers(graph: Any) -> dict[str, Any]:
    return {out: node for node in graph.node for out in node.output}


def _constants(graph: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _score_path(graph: Any, softmax: Any, producers: dict, constants: dict) -> tuple[Any, list]:
    """Walk back from a Softmax over element-wise ops: (the MatMul reached or None, the
    scalar scales met on the way as (op_type, value))."""
    scales: list[tuple[str, float]] = []
    node = producers.get(softmax.input[0])
    for _ in range(_MAX_HOPS):
        if node is None or node.op_type not in _SCORE_PATH_OPS:
            break
        for name in node.input[1:]:
            value = constants.get(name)
            if node.op_type in ("Mul", "Div") and value is not None and value.size == 1:
                scales.append((node.op_type, float(value.reshape(-1)[0])))
        node = producers.get(node.input[0])
    is_scores = node is not None and node.op_type == "MatMul"
    is_scores = is_scores and not any(name in constants for name in node.input)
    return (node if is_scores else None), scales


def looks_like_transformer(model: Any) -> bool:
    """A Softmax fed by a MatMul of two activations (Q @ K^T): self-attention."""
    graph = model.graph
    producers, constants = _producers(graph), _constants(graph)
    softmaxes = [n for n in graph.node if n.op_type == "Softmax"]
    return any(_score_path(graph, s, producers, constants)[0] for s in softmaxes)


def _hidden_size(graph: Any, constants: dict[str, np.ndarray]) -> int:
    """The most common d of square [d, d] MatMul weights (the Q, K, V, output projections)."""
    sizes = Counter(
        constants[n.input[1]].shape[0]
        for n in graph.node
        if n.op_type == "MatMul" and n.input[1] in constants
        and constants[n.input[1]].ndim == 2
        and constants[n.input[1]].shape[0] == constants[n.input[1]].shape[1]
    )  # fmt: skip
    return sizes.most_common(1)[0][0] if sizes else 0


def _head_size(op: str, scale: float) -> float:
    """The head size d that a scores scale implies: x / sqrt(d), or x * (1 / sqrt(d))."""
    return scale**2 if op == "Div" else 1.0 / scale**2


def attention_shape(model: Any) -> tuple[int, int] | None:
    """(num_heads, hidden_size) read from the graph, or None.

    The head size comes from the scale of the attention scores, the hidden size from the
    square projection weights. ONNX Runtime's own detection reads a constant
    [0, 0, heads, head_size] Reshape, which recent exporters no longer emit.
    """
    graph = model.graph
    producers, constants = _producers(graph), _constants(graph)
    hidden = _hidden_size(graph, constants)
    for softmax in (n for n in graph.node if n.op_type == "Softmax"):
        matmul, scales = _score_path(graph, softmax, producers, constants)
        for op, scale in scales if matmul is not None and hidden else []:
            exact = _head_size(op, scale) if scale > 0 else 0.0
            head = round(exact)
            if head > 0 and abs(exact - head) < 0.01 * head and hidden % head == 0:
                return hidden // head, hidden
    return None


def optimize_transformer(
    src: Path, dst: Path, num_heads: int = 0, hidden_size: int = 0
) -> dict[str, Any]:
    """Run ONNX Runtime's transformer optimizer (model_type "bert", Python fusions only: the
    session applies its own graph optimizations at load) on `src` and write `dst`.

    num_heads/hidden_size 0 = read them from the graph (`attention_shape`), else let the
    optimizer try. Returns {"fused": {op: count}, "num_heads", "hidden_size"}.
    """
    from onnxruntime.transformers import optimizer

    if not num_heads:
        num_heads, hidden_size = attention_shape(load_model(src)) or (0, 0)
    try:
        optimized = optimizer.optimize_model(
            str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=0
        )
    except Exception as exc:  # the fusers assert on graphs they misread
        raise FailedPrecondition(f"ONNX Runtime's transformer optimizer failed: {exc!r}") from None
    fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
    optimized.save_model_to_file(str(dst))
    return {"fused": fused, "num_heads": num_heads, "hidden_size": hidden_size}
