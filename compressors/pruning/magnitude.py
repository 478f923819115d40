"""prune.magnitude: unstructured magnitude pruning to a target sparsity.

The smallest-magnitude weights of the Conv/MatMul/Gemm weight initializers are set to zero,
either `global`ly (one threshold over all selected weights, as torch.nn.utils.prune's
global_unstructured) or `per_layer` (the same fraction in each). This is done on the ONNX
initializers with numpy; a .pt2 parent is first exported to ONNX. With `finetune_epochs`
the pruned model is converted to torch (onnx2torch), fine-tuned on the labeled "training"
dataset with the zeros held at zero after every step, and exported back to ONNX.

The result is a dense ONNX file whose zeros compress well (the evaluation reports the
compressed size); ONNX Runtime on CPU runs it no faster. Structured pruning is the one
that brings speed.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from compressors.base import Artifact, StepContext, StepResult, Technique
from compressors.graph.edit import set_initializer, weight_refs
from compressors.graph.files import load_model, save_model
from compressors.registry import register
from compressors.training.finetune import FinetuneFields, finetune_in_step
from pareto_core.formats import FORMAT_ONNX, FORMAT_TORCH_EXPORT


class MagnitudePruneConfig(FinetuneFields):
    sparsity: float = Field(0.5, ge=0.0, lt=1.0, description="fraction of weights set to 0")
    scope: Literal["global", "per_layer"] = "global"
    op_types: tuple[Literal["Conv", "MatMul", "Gemm"], ...] = Field(
        ("Conv", "MatMul", "Gemm"), min_length=1
    )
    min_size: int = Field(256, ge=1, description="weights with fewer elements are kept")


def magnitude_masks(arrays: list[np.ndarray], sparsity: float, scope: str) -> list[np.ndarray]:
    """Boolean keep-masks zeroing exactly round(sparsity * n) smallest |w|, counted over all
    arrays together (`global`) or in each array (`per_layer`)."""
    if scope == "per_layer":
        return [_keep_mask(np.abs(a).ravel(), sparsity).reshape(a.shape) for a in arrays]
    flat = np.concatenate([np.abs(a).ravel() for a in arrays]) if arrays else np.zeros(0)
    keep = _keep_mask(flat, sparsity)
    bounds = np.cumsum([0, *(a.size for a in arrays)])
    spans = zip(arrays, bounds[:-1], bounds[1:], strict=True)
    return [keep[lo:hi].reshape(a.shape) for a, lo, hi in spans]


def _keep_mask(magnitudes: np.ndarray, sparsity: float) -> np.ndarray:
    keep = np.ones(magnitudes.shape, dtype=bool)
    count = round(sparsity * magnitudes.size)
    if count > 0:
        keep[np.argpartition(magnitudes, count - 1)[:count]] = False
    return keep


def prune_model(model: Any, config: MagnitudePruneConfig) -> list[dict]:
    """Zero the smallest weights of `model` in place; returns the skipped weights."""
    refs, skipped = weight_refs(model.graph, config.op_types)
    small = [r for r in refs if r.array.size < config.min_size]
    skipped += [{"weight": r.name, "reason": f"{r.array.size} < min_size"} for r in small]
    refs = [r for r in refs if r.array.size >= config.min_size]
    masks = magnitude_masks([r.array for r in refs], config.sparsity, config.scope)
    for ref, keep in zip(refs, masks, strict=True):
        set_initializer(model.graph, ref.name, np.where(keep, ref.array, 0).astype(ref.array.dtype))
    return skipped


def sparsity_report(model: Any, config: MagnitudePruneConfig) -> dict[str, Any]:
    """Achieved sparsity per selected weight and over all of them."""
    refs, _ = weight_refs(model.graph, config.op_types)
    layers = [
        {
            "weight": r.name,
            "op": r.op_type,
            "shape": list(r.array.shape),
            "size": int(r.array.size),
            "sparsity": round(float(np.mean(r.array == 0)), 6),
        }
        for r in refs
        if r.array.size >= config.min_size
    ]
    total = sum(x["size"] for x in layers)
    zeros = sum(x["sparsity"] * x["size"] for x in layers)
    return {"layers": layers, "achieved_sparsity": round(zeros / total, 6) if total else 0.0}


def _finetune(
    pruned: Artifact, parent: Artifact, config: MagnitudePruneConfig, ctx: StepContext, name: str
) -> tuple[Artifact, dict[str, Any]]:
    """Fine-tune the pruned ONNX model in torch, keeping its zeros; returns (onnx, report)."""
    import torch

    from compressors.training.torch_bridge import example_inputs, onnx_to_torch, torch_to_onnx

    module = onnx_to_torch(pruned.path)
    masks = [(p, p != 0) for p in module.parameters() if p.ndim >= 2 and bool((p == 0).any())]

    @torch.no_grad()
    def keep_zeros() -> None:
        for param, mask in masks:
            param.mul_(mask)

    names = [t.name for t in parent.signature.inputs]
    report = finetune_in_step(module, config, ctx, name, names, after_step=keep_zeros)
    example = example_inputs(parent.signature, ctx.datasets.get("training"))
    out = torch_to_onnx(module, example, parent.signature, ctx.work_dir / "finetuned.onnx")
    return out, report


@register
class MagnitudePrune(Technique):
    name = "prune.magnitude"
    config_cls = MagnitudePruneConfig
    input_formats = frozenset({FORMAT_ONNX, FORMAT_TORCH_EXPORT})
    description = "Unstructured magnitude pruning (global or per layer), optional fine-tuning."

    def apply(
        self, artifact: Artifact, config: MagnitudePruneConfig, ctx: StepContext
    ) -> StepResult:
        if config.finetune_epochs:  # fail before any work when the dataset is missing
            ctx.dataset("training", self.name)
        source = artifact.path
        if artifact.format != FORMAT_ONNX:
            from compressors.training.torch_bridge import onnx_source

            source = onnx_source(artifact, ctx.work_dir)
        model = load_model(source)
        skipped = prune_model(model, config)
        out = save_model(model, ctx.work_dir / "pruned.onnx")
        ctx.progress(0.1, f"pruned to {config.sparsity:.0%} sparsity", {})
        finetuned: dict[str, Any] | None = None
        if config.finetune_epochs:
            out, finetuned = _finetune(out, artifact, config, ctx, self.name)
            model = load_model(out.path)
        report = {
            "scope": config.scope,
            "target_sparsity": config.sparsity,
            **sparsity_report(model, config),
            "skipped": skipped,
            "finetune": finetuned,
        }
        ctx.progress(1.0, f"sparsity {report['achieved_sparsity']:.1%}", {})
        return StepResult(out, report)
