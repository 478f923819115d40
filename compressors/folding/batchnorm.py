"""fold.batchnorm: fold inference-mode BatchNormalization into the Conv or Gemm before it.

    y = scale * (x - mean) / sqrt(var + eps) + B, with x = Conv(W, b) or Gemm(alpha, B, beta, C)

becomes one Conv/Gemm with rescaled weights and a new bias. Folded only where that is exact:
the producer's output is read by the BatchNormalization alone, and every parameter is a
constant initializer. Anything else is left as it is and reported with the reason. Done on
the ONNX graph with numpy (float64 arithmetic, cast back to the weight's dtype).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compressors.base import Artifact, StepContext, StepResult, Technique, TechniqueConfig
from compressors.graph.edit import (
    consumers,
    get_attribute,
    initializer_arrays,
    remove_unused_initializers,
    set_attribute,
    set_initializer,
    unique_name,
)
from compressors.graph.files import load_model, save_model
from compressors.registry import register

FOLDABLE = ("Conv", "Gemm")
Arrays = dict[str, np.ndarray]  # initializer name -> value
Readers = dict[str, list[Any]]  # tensor name -> nodes reading it


class FoldBatchNormConfig(TechniqueConfig):
    """No options: every BatchNormalization that can be folded exactly is folded."""


def _label(node: Any) -> str:
    return node.name or f"{node.op_type}->{node.output[0]}"


def _why_not(bn: Any, producer: Any, arrays: Arrays, readers: Readers, outputs: set[str]) -> str:
    """Empty when `bn` can be folded into `producer`, else the reason it cannot."""
    if len(bn.output) != 1 or get_attribute(bn, "training_mode", 0):
        return "it runs in training mode"
    if any(name not in arrays for name in bn.input[1:5]):
        return "its scale/bias/mean/var are not all constant initializers"
    if producer is None or producer.op_type not in FOLDABLE:
        kind = producer.op_type if producer is not None else "a graph input"
        return f"its input comes from {kind}, not from {' or '.join(FOLDABLE)}"
    if len(readers.get(bn.input[0], [])) != 1 or bn.input[0] in outputs:
        return f"the output of {_label(producer)} is also read elsewhere"
    if any(name and name not in arrays for name in producer.input[1:]):
        return f"the weights of {_label(producer)} are not constant initializers"
    channels = arrays[bn.input[1]].shape[0]
    weight = arrays[producer.input[1]]
    transposed = producer.op_type == "Gemm" and get_attribute(producer, "transB", 0)
    out_dim = weight.shape[0] if producer.op_type == "Conv" or transposed else weight.shape[-1]
    if out_dim != channels:
        return f"{_label(producer)} has {out_dim} output channels, BatchNormalization {channels}"
    return ""


def _bn_scale_shift(bn: Any, arrays: Arrays) -> tuple[np.ndarray, np.ndarray]:
    """(s, t) with BN(x) = s * x + t, in float64."""
    scale, bias, mean, var = (arrays[name].astype(np.float64) for name in bn.input[1:5])
    s = scale / np.sqrt(var + float(get_attribute(bn, "epsilon", 1e-5)))
    return s, bias - mean * s


def _write(graph: Any, node: Any, index: int, array: np.ndarray, readers: Readers) -> None:
    """Put `array` at input `index` of `node`: in place unless another node shares it."""
    current = node.input[index] if len(node.input) > index else ""
    if not current or len(readers.get(current, [])) > 1:
        current = unique_name(graph, f"{node.name or node.op_type}_folded_{index}")
    while len(node.input) <= index:
        node.input.append("")
    node.input[index] = current
    set_initializer(graph, current, array)


def _fold_conv(
    graph: Any, conv: Any, s: np.ndarray, t: np.ndarray, arrays: Arrays, readers: Readers
) -> None:
    weight = arrays[conv.input[1]]
    bias = arrays[conv.input[2]] if len(conv.input) > 2 and conv.input[2] else 0.0
    new_weight = weight.astype(np.float64) * s.reshape(-1, *([1] * (weight.ndim - 1)))
    new_bias = np.asarray(bias, dtype=np.float64) * s + t
    _write(graph, conv, 1, new_weight.astype(weight.dtype), readers)
    _write(graph, conv, 2, new_bias.astype(weight.dtype), readers)


def _fold_gemm(
    graph: Any, gemm: Any, s: np.ndarray, t: np.ndarray, arrays: Arrays, readers: Readers
) -> None:
    weight = arrays[gemm.input[1]]
    scaled = s[:, None] if get_attribute(gemm, "transB", 0) else s[None, :]
    c = arrays[gemm.input[2]] if len(gemm.input) > 2 and gemm.input[2] else 0.0
    beta = float(get_attribute(gemm, "beta", 1.0))
    new_c = beta * np.asarray(c, dtype=np.float64) * s + t
    _write(graph, gemm, 1, (weight.astype(np.float64) * scaled).astype(weight.dtype), readers)
    _write(graph, gemm, 2, new_c.astype(weight.dtype), readers)
    set_attribute(gemm, "beta", 1.0)


def fold_batchnorms(graph: Any) -> tuple[list[dict], list[dict]]:
    """Fold what can be folded in `graph` (in place); returns (folded, skipped)."""
    folded: list[dict] = []
    skipped: list[dict] = []
    outputs = {o.name for o in graph.output}
    for bn in [n for n in graph.node if n.op_type == "BatchNormalization"]:
        arrays, readers = initializer_arrays(graph), consumers(graph)
        producer = next((n for n in graph.node if bn.input[0] in n.output), None)
        reason = _why_not(bn, producer, arrays, readers, outputs)
        if reason:
            skipped.append({"node": _label(bn), "reason": reason})
            continue
        s, t = _bn_scale_shift(bn, arrays)
        fold = _fold_conv if producer.op_type == "Conv" else _fold_gemm
        fold(graph, producer, s, t, arrays, readers)
        folded.append({"node": _label(bn), "into": _label(producer), "op": producer.op_type})
        stale = [v for v in graph.value_info if v.name == producer.output[0]]
        for info in stale:  # the producer's old output no longer exists
            graph.value_info.remove(info)
        producer.output[0] = bn.output[0]
        graph.node.remove(bn)
    remove_unused_initializers(graph)
    return folded, skipped


@register
class FoldBatchNorm(Technique):
    name = "fold.batchnorm"
    config_cls = FoldBatchNormConfig
    description = "Fold BatchNormalization into the preceding Conv/Gemm (exact, ONNX graph)."

    def apply(
        self, artifact: Artifact, config: FoldBatchNormConfig, ctx: StepContext
    ) -> StepResult:
        model = load_model(artifact.path)
        nodes_before = len(model.graph.node)
        folded, skipped = fold_batchnorms(model.graph)
        out = save_model(model, ctx.work_dir / "folded.onnx")
        ctx.progress(1.0, f"folded {len(folded)} BatchNormalization node(s)", {})
        report: dict[str, Any] = {
            "folded": folded,
            "skipped": skipped,
            "nodes_before": nodes_before,
            "nodes_after": len(model.graph.node),
        }
        if not folded:
            report["message"] = (
                "nothing to fold: no BatchNormalization in the graph"
                if not skipped
                else f"nothing to fold: {len(skipped)} BatchNormalization node(s) cannot be"
            )
        return StepResult(out, report)
