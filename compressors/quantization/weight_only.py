"""quantize.weight_only: 4- or 8-bit weights, float activations (ONNX Runtime's MatMulNBits).

Linear layers (MatMul with a constant [K, N] weight) become `MatMulNBits`: the weight in
blocks of `block_size` input channels, each block with its own scale (and zero point
unless `symmetric`). Activations stay float; with `accuracy_level` 4 ONNX Runtime computes
in int8 on the CPU. Three ways to choose the 4/8-bit values:

* `rtn`: round to nearest (ORT's `DefaultWeightOnlyQuantConfig`);
* `hqq`: Half-Quadratic Quantization, which fits scales and (float) zero points to
  minimise the weight error, no data needed (ORT's `HQQWeightOnlyQuantConfig`, torch);
* `gptq`: GPTQ, which rounds channel by channel and compensates each error using the
  layer's inputs on the job's calibration dataset (ours, see `gptq`).

The token embedding table goes to n bits too (`GatherBlockQuantized`, see `embeddings`)
when the installed ONNX Runtime runs that contrib op on the CPU (`embeddings: auto`);
without it a 4-bit MiniLM stays at 0.60x the size, with it 0.16x.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from compressors.base import (
    ROLE_CALIBRATION,
    Artifact,
    StepContext,
    StepResult,
    Technique,
    TechniqueConfig,
)
from compressors.graph.files import (
    artifact_for,
    load_model,
    op_histogram,
    require_fp32,
    size_report,
)
from compressors.quantization.options import NodeName, PowerOfTwo, check_nodes
from compressors.registry import register
from pareto_core.errors import FailedPrecondition

NAME = "quantize.weight_only"
DEFAULT_SAMPLES = 128
DEFAULT_DAMP = 0.01


class WeightOnlyConfig(TechniqueConfig):
    """Block-wise 4/8-bit weights (MatMulNBits), embeddings included where supported."""

    bits: Literal[4, 8] = 4
    algorithm: Literal["rtn", "hqq", "gptq"] = "rtn"
    block_size: PowerOfTwo = Field(
        32, ge=16, le=4096, description="weights per scale (power of two)"
    )
    symmetric: bool = Field(False, description="no zero points (rtn, gptq)")
    accuracy_level: Literal[0, 1, 2, 3, 4] = Field(
        4, description="MatMulNBits compute: 0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8"
    )
    embeddings: Literal["auto", "always", "never"] = Field(
        "auto", description="embedding tables to n bits (GatherBlockQuantized): auto = if ORT can"
    )
    embedding_bits: Literal[4, 8] | None = Field(None, description="None = bits")
    min_embedding_rows: int = Field(1024, ge=1, description="smaller tables stay float")
    nodes_to_exclude: tuple[NodeName, ...] = Field((), description="MatMuls kept float")
    calibration_samples: int = Field(DEFAULT_SAMPLES, ge=1, le=100_000, description="gptq")
    batch_size: int = Field(16, ge=1, le=4096, description="gptq calibration batch size")
    damp: float = Field(DEFAULT_DAMP, gt=0.0, le=1.0, description="gptq: Hessian dampening")

    @model_validator(mode="after")
    def _options_need_their_algorithm(self) -> WeightOnlyConfig:
        if self.algorithm == "hqq" and self.symmetric:
            raise ValueError("symmetric applies to rtn and gptq (hqq fits its zero points)")
        if self.algorithm == "hqq" and self.bits == 8:
            # hqq's zero points are float; ORT's CPU MatMulNBits refuses them at 8 bits
            raise ValueError(
                "bits 8 needs algorithm rtn or gptq: hqq's float zero points run only at "
                "4 bits (ONNX Runtime's CPU MatMulNBits)"
            )
        gptq_only = {"calibration_samples": DEFAULT_SAMPLES, "damp": DEFAULT_DAMP}
        changed = [k for k, default in gptq_only.items() if getattr(self, k) != default]
        if self.algorithm != "gptq" and changed:
            raise ValueError(f"{changed} apply to algorithm 'gptq', not {self.algorithm!r}")
        return self


def linear_layers(model: Any, config: WeightOnlyConfig) -> tuple[list[str], list[dict[str, str]]]:
    """(MatMuls to quantize, MatMuls skipped with the reason): a 2-D float weight whose
    K is a multiple of block_size, not excluded."""
    from compressors.graph.edit import initializer_arrays

    arrays = initializer_arrays(model.graph)
    chosen, skipped = [], []
    for node in model.graph.node:
        weight = arrays.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None or weight.ndim != 2 or weight.dtype.kind != "f":
            continue
        if node.name in config.nodes_to_exclude:
            continue
        if weight.shape[0] % config.block_size:
            reason = f"K {weight.shape[0]} is not a multiple of block_size {config.block_size}"
            skipped.append({"node": node.name, "reason": reason})
            continue
        chosen.append(node.name)
    return chosen, skipped


def _ort_quantize(model: Any, layers: list[str], config: WeightOnlyConfig) -> Any:
    """rtn or hqq through ORT's MatMulNBitsQuantizer; the quantized ModelProto."""
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        HQQWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    algo: Any
    if config.algorithm == "hqq":
        algo = HQQWeightOnlyQuantConfig(block_size=config.block_size, bits=config.bits)
    else:
        algo = DefaultWeightOnlyQuantConfig(
            block_size=config.block_size,
            is_symmetric=config.symmetric,
            accuracy_level=config.accuracy_level,
            bits=config.bits,
            op_types_to_quantize=("MatMul",),
        )
    chosen = set(layers)
    others = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name not in chosen]
    quantizer = MatMulNBitsQuantizer(model, algo_config=algo, nodes_to_exclude=others)
    quantizer.process()
    quantized = quantizer.model.model
    _set_accuracy_level(quantized, config.accuracy_level)  # HQQ leaves it unset
    return quantized


def _set_accuracy_level(model: Any, level: int) -> None:
    from compressors.graph.edit import set_attribute

    for node in model.graph.node:
        if node.op_type == "MatMulNBits":
            set_attribute(node, "accuracy_level", level)


def _gptq_quantize(
    model: Any, path: Path, layers: list[str], config: WeightOnlyConfig, ctx: StepContext
) -> Any:
    """GPTQ on `layers`, calibrated on the job's calibration dataset; the model, in place."""
    from onnx import helper

    from compressors.graph.edit import initializer_arrays, remove_unused_initializers
    from compressors.graph.run import feeds_for
    from compressors.quantization.gptq import gptq, hessians
    from compressors.quantization.nbits import matmul_nbits

    dataset = ctx.dataset(ROLE_CALIBRATION, f"{NAME} (algorithm gptq)")
    signature = artifact_for(path).signature
    feeds = feeds_for(signature, dataset.inputs, config.calibration_samples, "calibration")
    nodes = {n.name: n for n in model.graph.node if n.name in set(layers)}
    inputs = sorted({n.input[0] for n in nodes.values()})
    ctx.progress(0.1, f"GPTQ: reading the inputs of {len(nodes)} layers on {dataset.name!r}", {})
    run = {"batch_size": config.batch_size, "threads": ctx.threads}
    found = hessians(path, inputs, feeds, ctx.work_dir, **run, is_cancelled=ctx.is_cancelled)
    arrays = initializer_arrays(model.graph)
    for i, node in enumerate(nodes.values()):
        ctx.progress(0.3 + 0.6 * i / len(nodes), f"GPTQ: {node.name}", {})
        weight = arrays[node.input[1]]
        blocks = gptq(
            weight, found[node.input[0]], config.bits, config.block_size, config.symmetric,
            config.damp,
        )  # fmt: skip
        new, inits = matmul_nbits(node, weight.shape, blocks, config.accuracy_level, weight.dtype)
        node.CopyFrom(new)
        model.graph.initializer.extend(inits)
    remove_unused_initializers(model.graph)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model


def _embeddings(model: Any, config: WeightOnlyConfig) -> dict[str, Any]:
    from compressors.quantization.embeddings import quantize_tables, runtime_support

    if config.embeddings == "never":
        return {"quantized": [], "reason": "embeddings is 'never'"}
    missing = runtime_support()
    if missing is not None:
        if config.embeddings == "always":
            raise FailedPrecondition(f"{NAME}: embeddings 'always', but {missing}")
        return {"quantized": [], "reason": missing}
    bits = config.embedding_bits or config.bits
    return quantize_tables(
        model, bits, config.block_size, config.symmetric, config.min_embedding_rows
    )


@register
class QuantizeWeightOnly(Technique):
    name = NAME
    config_cls = WeightOnlyConfig
    description = "4/8-bit weights (MatMulNBits, RTN/HQQ/GPTQ), embeddings too; float activations."

    def apply(self, artifact: Artifact, config: WeightOnlyConfig, ctx: StepContext) -> StepResult:
        import onnx

        model = load_model(artifact.path)
        require_fp32(model, NAME)
        check_nodes(model, config.nodes_to_exclude, "config.nodes_to_exclude")
        layers, skipped = linear_layers(model, config)
        if not layers:
            raise FailedPrecondition(f"{NAME}: no MatMul with a constant 2-D weight to quantize")
        ctx.progress(0.05, f"{config.algorithm}: {len(layers)} layers to {config.bits} bits", {})
        if config.algorithm == "gptq":
            model = _gptq_quantize(model, artifact.path, layers, config, ctx)
        else:
            model = _ort_quantize(model, layers, config)
        embeddings = _embeddings(model, config)
        out = ctx.work_dir / "quantized.onnx"
        onnx.save(model, str(out))
        result = artifact_for(out)
        report = {
            "algorithm": config.algorithm,
            "bits": config.bits,
            "block_size": config.block_size,
            "symmetric": config.symmetric,
            "accuracy_level": config.accuracy_level,
            "layers": len(layers),
            "layers_skipped": skipped,
            "embeddings": embeddings,
            **size_report(artifact.path, out),
            "ops": op_histogram(load_model(out)),
        }
        ctx.progress(1.0, f"quantized: {report['size_ratio']:.2f}x the size", {})
        return StepResult(result, report)
