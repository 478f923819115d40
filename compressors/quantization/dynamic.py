"""quantize.dynamic: int8 weights, activations quantized on the fly (ONNX Runtime).

Glue around `onnxruntime.quantization.quantize_dynamic`. Per-channel weight scales are the
default: per-tensor scales measurably hurt transformers (MiniLM: mean cosine 0.96 to fp32,
per-channel 0.99). For a transformer, ONNX Runtime's transformer optimizer
(`onnxruntime.transformers.optimizer`, see `compressors.optimize_transformer`)
first fuses attention, LayerNorm and Gelu, so that whole attention blocks become QAttention.
Whether the fused graph runs faster depends on the CPU and the thread count (measure it:
the job's evaluation does); `optimize: never` quantizes the graph as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from compressors.base import Artifact, StepContext, StepResult, Technique, TechniqueConfig
from compressors.graph.files import (
    artifact_for,
    load_model,
    op_histogram,
    require_fp32,
    size_report,
)
from compressors.graph.transformer import looks_like_transformer, optimize_transformer
from compressors.quantization.options import NodeName, OpType, check_nodes, check_op_types
from compressors.registry import register
from pareto_core.errors import FailedPrecondition

NAME = "quantize.dynamic"


class DynamicConfig(TechniqueConfig):
    """Dynamic int8 quantization; the defaults suit transformers and MLPs on x86 CPUs."""

    weight_type: Literal["int8", "uint8"] = "int8"
    per_channel: bool = Field(True, description="one scale per output channel of each weight")
    reduce_range: bool = Field(False, description="7-bit weights, for CPUs without VNNI")
    op_types: tuple[OpType, ...] = Field(
        (), description="op types to quantize; empty = all ORT can (MatMul, Attention, Conv, ...)"
    )
    nodes_to_exclude: tuple[NodeName, ...] = Field(
        (), description="node names kept in float32 (names of the graph after optimization)"
    )
    optimize: Literal["auto", "always", "never"] = Field(
        "auto",
        description="ORT transformer optimizer first: auto = when the graph has self-attention",
    )
    num_heads: int = Field(0, ge=0, le=4096, description="attention heads; 0 = read the graph")
    hidden_size: int = Field(0, ge=0, le=1 << 20, description="model width; 0 = read the graph")

    @model_validator(mode="after")
    def _heads_and_width(self) -> DynamicConfig:
        if (self.num_heads == 0) != (self.hidden_size == 0):
            raise ValueError("set num_heads and hidden_size together (or neither)")
        if self.num_heads and self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}"
            )
        return self


def prepare(
    src: Path, model: Any, work_dir: Path, config: DynamicConfig
) -> tuple[Path, dict[str, Any]]:
    """The model to quantize: `src` (loaded as `model`) or its transformer-optimized copy,
    and a report of that choice."""
    if config.optimize == "never":
        return src, {"ran": False, "reason": "optimize is 'never'"}
    if config.optimize == "auto" and not looks_like_transformer(model):
        return src, {"ran": False, "reason": "no self-attention in the graph"}
    dst = work_dir / "optimized.onnx"
    try:
        info = optimize_transformer(src, dst, config.num_heads, config.hidden_size)
    except FailedPrecondition as exc:
        if config.optimize == "always":
            raise
        return src, {"ran": True, "used": False, "reason": str(exc)}
    if config.optimize == "auto" and not info["fused"]:
        return src, {"ran": True, "used": False, "reason": "the optimizer fused nothing", **info}
    return dst, {"ran": True, "used": True, **info}


def quantize(
    prepared: Path, dst: Path, config: DynamicConfig, nodes_to_exclude: list[str] | None = None
) -> None:
    """Write the dynamically quantized `prepared` model to `dst`."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        prepared,
        dst,
        op_types_to_quantize=check_op_types(config.op_types, "dynamic", "config.op_types"),
        per_channel=config.per_channel,
        reduce_range=config.reduce_range,
        weight_type=QuantType.QInt8 if config.weight_type == "int8" else QuantType.QUInt8,
        nodes_to_exclude=with_gemm_names(nodes_to_exclude or []),
        # Fused contrib ops (Attention, SkipLayerNormalization) have no ONNX shape inference;
        # their outputs are float in a float32 model.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def with_gemm_names(names: list[str]) -> list[str]:
    """`names` plus the name each would have as a MatMul: ORT's dynamic quantizer first
    rewrites Gemm node X into MatMul "X_MatMul" (+ Add), and excludes by the new name."""
    return [*names, *(f"{name}_MatMul" for name in names)]


def prepare_checked(
    artifact: Artifact, config: DynamicConfig, work_dir: Path
) -> tuple[Path, list[str], dict[str, Any]]:
    """Refuse non-fp32 models, prepare, and check nodes_to_exclude against the prepared graph."""
    model = load_model(artifact.path)
    require_fp32(model, NAME)
    prepared, optimizer = prepare(artifact.path, model, work_dir, config)
    if prepared != artifact.path:
        model = load_model(prepared)
    hint = " (after the transformer optimizer; optimize: never keeps the original names)"
    field = "config.nodes_to_exclude"
    hint = hint if optimizer.get("used") else ""
    return prepared, check_nodes(model, config.nodes_to_exclude, field, hint), optimizer


@register
class QuantizeDynamic(Technique):
    name = NAME
    config_cls = DynamicConfig
    description = "ONNX Runtime dynamic int8 (per-channel), transformer optimizer first."

    def apply(self, artifact: Artifact, config: DynamicConfig, ctx: StepContext) -> StepResult:
        ctx.progress(0.0, "preparing the graph", {})
        prepared, excluded, optimizer = prepare_checked(artifact, config, ctx.work_dir)
        ctx.progress(0.4, "quantizing weights to int8", {})
        out = ctx.work_dir / "quantized.onnx"
        quantize(prepared, out, config, excluded)
        result = artifact_for(out)
        report = {
            "optimizer": optimizer,
            "weight_type": config.weight_type,
            "per_channel": config.per_channel,
            "nodes_excluded": excluded,
            **size_report(artifact.path, out),
            "ops": op_histogram(load_model(out)),
        }
        ctx.progress(1.0, f"quantized: {report['size_ratio']:.2f}x the size", {})
        return StepResult(result, report)
