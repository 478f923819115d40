"""low_rank.svd: factorize MatMul/Gemm (and 1x1 Conv) weights with a truncated SVD.

A weight W (k x n) becomes A (k x r) @ B (r x n), with A = U_r * S_r and B = V_r^T, so
X @ W turns into (X @ A) @ B: two MatMuls, r * (k + n) parameters instead of k * n. The rank
is `rank`, or the smallest r keeping `energy` of the sum of squared singular values. A layer
is factorized only when that reduces its parameters; skipped layers are reported with the
reason. Works on the ONNX initializers with numpy (float64 SVD), no torch needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from compressors.base import Artifact, StepContext, StepResult, Technique, TechniqueConfig
from compressors.graph.edit import (
    WeightRef,
    get_attribute,
    remove_unused_initializers,
    set_initializer,
    unique_name,
    weight_refs,
)
from compressors.graph.files import load_model, save_model
from compressors.registry import register


class SvdConfig(TechniqueConfig):
    rank: int | None = Field(None, ge=1, description="fixed rank; overrides energy")
    energy: float = Field(0.9, gt=0.0, le=1.0, description="kept fraction of sum(s^2)")
    op_types: tuple[Literal["MatMul", "Gemm", "Conv"], ...] = Field(
        ("MatMul", "Gemm"), min_length=1, description="Conv: 1x1 convolutions with group=1"
    )
    min_size: int = Field(4096, ge=1, description="weights with fewer elements are kept")

    @model_validator(mode="after")
    def _rank_or_energy(self) -> SvdConfig:
        if self.rank is not None and "energy" in self.model_fields_set:
            raise ValueError("set either rank or energy, not both")
        return self


@dataclass(frozen=True)
class Factors:
    a: np.ndarray  # k x r
    b: np.ndarray  # r x n
    energy_kept: float
    relative_error: float  # ||W - A B||_F / ||W||_F


def choose_rank(s: np.ndarray, rank: int | None, energy: float) -> int:
    """`rank` (capped at len(s)), or the smallest r with sum(s[:r]^2) >= energy * sum(s^2)."""
    if rank is not None:
        return min(rank, len(s))
    power = np.cumsum(s.astype(np.float64) ** 2)
    if power[-1] == 0:
        return 1
    return int(np.searchsorted(power / power[-1], energy - 1e-12) + 1)


def factorize(matrix: np.ndarray, rank: int | None, energy: float) -> Factors:
    u, s, vt = np.linalg.svd(matrix.astype(np.float64), full_matrices=False)
    r = choose_rank(s, rank, energy)
    total = float(np.sum(s**2)) or 1.0
    kept = float(np.sum(s[:r] ** 2))
    a, b = u[:, :r] * s[:r], vt[:r]
    return Factors(a, b, kept / total, float(np.sqrt(max(total - kept, 0.0) / total)))


def _matrix_of(ref: WeightRef) -> tuple[np.ndarray | None, str]:
    """The k x n matrix that the node multiplies its input by, or (None, why not)."""
    node, w = ref.nodes[0], ref.array
    if ref.op_type == "MatMul":
        return (w, "") if w.ndim == 2 else (None, f"weight has {w.ndim} dims, expected 2")
    if ref.op_type == "Gemm":
        if get_attribute(node, "transA", 0):
            return None, "Gemm with transA=1 is not factorized"
        return (w.T if get_attribute(node, "transB", 0) else w), ""
    if w.ndim < 3 or any(d != 1 for d in w.shape[2:]) or get_attribute(node, "group", 1) != 1:
        return None, f"Conv weight {list(w.shape)} is not a 1x1 kernel with group=1"
    return w.reshape(w.shape[:2]).T, ""


def _new_init(graph: Any, base: str, array: np.ndarray, dtype: np.dtype) -> str:
    name = unique_name(graph, base)
    set_initializer(graph, name, array.astype(dtype))
    return name


def _rewrite(graph: Any, ref: WeightRef, f: Factors) -> list[Any]:
    """Nodes that replace ref.nodes[0] (which is edited in place and kept last)."""
    from onnx import helper

    node, dtype = ref.nodes[0], ref.array.dtype
    mid = unique_name(graph, f"{ref.name}_lowrank_out")
    first_name = unique_name(graph, f"{node.name or ref.op_type}_lowrank")
    if ref.op_type == "Conv":
        spatial = [1] * (ref.array.ndim - 2)
        a = _new_init(graph, f"{ref.name}_A", f.a.T.reshape(-1, f.a.shape[0], *spatial), dtype)
        b = _new_init(graph, f"{ref.name}_B", f.b.T.reshape(-1, f.b.shape[0], *spatial), dtype)
        first = helper.make_node("Conv", [node.input[0], a], [mid], name=first_name)
        first.attribute.extend(node.attribute)
        for attr in [x for x in node.attribute if x.name not in ("kernel_shape",)]:
            node.attribute.remove(attr)
    else:
        alpha = float(get_attribute(node, "alpha", 1.0)) if ref.op_type == "Gemm" else 1.0
        a = _new_init(graph, f"{ref.name}_A", f.a * alpha, dtype)
        b = _new_init(graph, f"{ref.name}_B", f.b, dtype)
        first = helper.make_node("MatMul", [node.input[0], a], [mid], name=first_name)
        for attr in [x for x in node.attribute if x.name in ("alpha", "transB")]:
            node.attribute.remove(attr)
    node.input[0], node.input[1] = mid, b
    return [first, node]


def _layer_entry(ref: WeightRef, f: Factors, k: int, n: int) -> dict[str, Any]:
    r = f.a.shape[1]
    return {
        "node": ref.nodes[0].name,
        "weight": ref.name,
        "op": ref.op_type,
        "shape": list(ref.array.shape),
        "rank": r,
        "max_rank": min(k, n),
        "energy_kept": round(f.energy_kept, 6),
        "relative_error": round(f.relative_error, 6),
        "params_before": k * n,
        "params_after": r * (k + n),
    }


def _plan(ref: WeightRef, config: SvdConfig) -> tuple[Factors | None, str]:
    """The factors for one weight, or (None, why it is skipped)."""
    if len(ref.nodes) != 1:
        return None, f"shared by {len(ref.nodes)} nodes"
    if ref.array.size < config.min_size:
        return None, f"{ref.array.size} elements < min_size {config.min_size}"
    matrix, why = _matrix_of(ref)
    if matrix is None:
        return None, why
    k, n = matrix.shape
    f = factorize(matrix, config.rank, config.energy)
    r = f.a.shape[1]
    if r * (k + n) >= k * n:
        return None, f"rank {r} needs {r * (k + n)} params >= {k * n} of the dense {k}x{n}"
    return f, ""


def low_rank(model: Any, config: SvdConfig) -> dict[str, Any]:
    """Factorize the eligible weights of `model` in place; returns the report."""
    graph = model.graph
    refs, skipped = weight_refs(graph, config.op_types)
    layers, replaced = [], {}
    for ref in refs:
        f, why = _plan(ref, config)
        if f is None:
            skipped.append({"weight": ref.name, "reason": why})
            continue
        layers.append(_layer_entry(ref, f, f.a.shape[0], f.b.shape[1]))
        replaced[id(ref.nodes[0])] = _rewrite(graph, ref, f)
    nodes = [new for node in graph.node for new in replaced.get(id(node), [node])]
    del graph.node[:]
    graph.node.extend(nodes)
    remove_unused_initializers(graph)
    before = sum(x["params_before"] for x in layers)
    after = sum(x["params_after"] for x in layers)
    return {"layers": layers, "skipped": skipped, "params_before": before, "params_after": after}


@register
class LowRankSvd(Technique):
    name = "low_rank.svd"
    config_cls = SvdConfig
    description = "Truncated-SVD factorization of MatMul/Gemm (and 1x1 Conv) weights."

    def apply(self, artifact: Artifact, config: SvdConfig, ctx: StepContext) -> StepResult:
        model = load_model(artifact.path)
        report = low_rank(model, config)
        out = save_model(model, ctx.work_dir / "low_rank.onnx")
        if not report["layers"]:
            report["message"] = "no layer factorized (see skipped for the reasons)"
        ctx.progress(1.0, f"factorized {len(report['layers'])} layer(s)", {})
        return StepResult(out, report)
