"""convert.fp16: float16 weights and activations where safe (ONNX Runtime's converter).

Glue around `onnxruntime.transformers.float16.convert_float_to_float16`. Ops without safe
float16 kernels stay float32 behind Cast nodes: by default ORT's own block list
(`DEFAULT_OP_BLOCK_LIST`: Range, TopK, CumSum, Min/Max, Upsample, the ai.onnx.ml ops, ...),
plus what the config adds. With `keep_io_types` (the default) the model still takes and
returns float32, so clients need no change. It halves the file; ONNX Runtime's CPU kernels
for float16 are few, so expect the speed-up on GPUs, not on CPUs.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from compressors.base import Artifact, StepContext, StepResult, Technique, TechniqueConfig
from compressors.graph.files import artifact_for, load_model, require_fp32, size_report
from compressors.quantization.options import NodeName, OpType, check_nodes
from compressors.registry import register

NAME = "convert.fp16"


class Fp16Config(TechniqueConfig):
    """Float16 conversion; ops and nodes on the block lists stay float32."""

    keep_io_types: bool = Field(True, description="float32 inputs/outputs (clients unchanged)")
    op_block_list: tuple[OpType, ...] | None = Field(
        None, description="op types kept in float32; None = ORT's default list"
    )
    extra_block_ops: tuple[OpType, ...] = Field(
        (), description="op types kept in float32 in addition to op_block_list"
    )
    node_block_list: tuple[NodeName, ...] = Field((), description="node names kept in float32")


def blocked_ops(config: Fp16Config) -> list[str]:
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST

    base = DEFAULT_OP_BLOCK_LIST if config.op_block_list is None else config.op_block_list
    return sorted({*base, *config.extra_block_ops})


def convert(model: Any, config: Fp16Config) -> Any:
    """The float16 model. ORT's converter appends the Cast nodes it adds for float32 IO at
    the end of the graph; they are put back in topological order for onnx.checker."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    converted = convert_float_to_float16(
        model,
        keep_io_types=config.keep_io_types,
        op_block_list=blocked_ops(config),
        node_block_list=list(config.node_block_list),
    )
    OnnxModel(converted).topological_sort()
    return converted


@register
class ConvertFp16(Technique):
    name = NAME
    config_cls = Fp16Config
    description = "float16 weights and activations (ORT converter), float32 IO by default."

    def apply(self, artifact: Artifact, config: Fp16Config, ctx: StepContext) -> StepResult:
        import onnx

        model = load_model(artifact.path)
        require_fp32(model, NAME)
        check_nodes(model, config.node_block_list, "config.node_block_list")
        ctx.progress(0.1, "converting to float16", {})
        out = ctx.work_dir / "fp16.onnx"
        onnx.save(convert(model, config), str(out))
        result = artifact_for(out)
        report = {
            "keep_io_types": config.keep_io_types,
            "op_block_list": blocked_ops(config),
            "node_block_list": list(config.node_block_list),
            **size_report(artifact.path, out),
        }
        ctx.progress(1.0, f"converted: {report['size_ratio']:.2f}x the size", {})
        return StepResult(result, report)
