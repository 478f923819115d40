"""quantize.static: int8 weights and activations, activation ranges calibrated on a dataset.

Glue around `onnxruntime.quantization.quantize_static`: QDQ format by default (the portable
one; ONNX Runtime fuses QuantizeLinear/DequantizeLinear pairs into QLinearConv, QGemm, ...
at load), weights int8 (per channel by default), activations uint8 or int8, ranges from
minmax, entropy or percentile calibration on the job's "calibration" dataset. The model is
first run through ORT's quantization pre-processing (`quant_pre_process`: symbolic shape
inference and basic graph optimizations) where that succeeds.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from compressors.base import (
    ROLE_CALIBRATION,
    Artifact,
    Dataset,
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
from compressors.quantization.options import (
    NodeName,
    OpType,
    check_nodes,
    check_op_types,
    quantizable_ops,
)
from compressors.registry import register
from pareto_core.tensors import Signature

NAME = "quantize.static"
DEFAULT_PERCENTILE = 99.999
DEFAULT_ENTROPY_BINS = 512
QUANTIZED_BINS = 128  # entropy: the int8 histogram the KL divergence compares against


class StaticConfig(TechniqueConfig):
    """Static int8 quantization (QDQ), calibrated on the job's calibration dataset."""

    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    percentile: float = Field(
        DEFAULT_PERCENTILE,
        ge=90.0,
        le=100.0,
        description="kept percentile of |x| (method percentile)",
    )
    entropy_bins: int = Field(
        DEFAULT_ENTROPY_BINS,
        ge=256,
        le=8192,
        description="histogram bins of entropy calibration (more: finer search, slower)",
    )
    calibration_samples: int = Field(256, ge=1, le=100_000, description="samples calibrated on")
    batch_size: int = Field(16, ge=1, le=4096, description="calibration batch size")
    activation_type: Literal["uint8", "int8"] = "uint8"
    per_channel: bool = Field(True, description="one scale per output channel of each weight")
    reduce_range: bool = Field(False, description="7-bit weights, for CPUs without VNNI")
    op_types: tuple[OpType, ...] = Field(
        (), description="op types to quantize; empty = all ORT can"
    )
    nodes_to_exclude: tuple[NodeName, ...] = Field((), description="node names kept in float32")
    preprocess: bool = Field(True, description="ORT quant_pre_process first (shape inference)")
    format: Literal["qdq", "qoperator"] = Field(
        "qdq", description="qdq: Q/DQ pairs around float ops; qoperator: QLinearConv, QGemm, ..."
    )

    @model_validator(mode="after")
    def _options_need_their_method(self) -> StaticConfig:
        if self.method != "percentile" and self.percentile != DEFAULT_PERCENTILE:
            raise ValueError(f"percentile applies to method 'percentile', not {self.method!r}")
        if self.method != "entropy" and self.entropy_bins != DEFAULT_ENTROPY_BINS:
            raise ValueError(f"entropy_bins applies to method 'entropy', not {self.method!r}")
        return self


def preprocess(src: Path, work_dir: Path, config: StaticConfig) -> tuple[Path, dict[str, Any]]:
    """`src` after ORT's quant_pre_process, or `src` itself (with the reason) when it is off
    or fails: it is an optimization of the result, not a requirement."""
    if not config.preprocess:
        return src, {"ran": False, "reason": "preprocess is false"}
    from onnxruntime.quantization import quant_pre_process

    dst = work_dir / "preprocessed.onnx"
    attempts = [{}, {"skip_symbolic_shape": True}]
    errors = []
    for options in attempts:
        try:
            # symbolic shape inference dumps a model into the cwd when it gives up
            with contextlib.chdir(work_dir):
                quant_pre_process(str(src), str(dst), **options)
            return dst, {"ran": True, **options}
        except Exception as exc:  # symbolic shape inference rejects some graphs
            errors.append(repr(exc)[:300])
    return src, {"ran": False, "reason": "quant_pre_process failed", "errors": errors}


def calibrate(
    prepared: Path,
    signature: Signature,
    dataset: Dataset,
    config: StaticConfig,
    ctx: StepContext,
    cache: Path,
    share: float,
) -> int:
    """Calibrate `prepared` (IO `signature`) on `dataset` into the ORT calibration cache
    `cache`; returns the number of samples used. Progress is reported as `share` of the step."""
    from compressors.quantization.calibration import DatasetReader, compute_ranges

    def progress(fraction: float) -> None:
        ctx.progress(share * fraction, f"calibrating ({config.method}) on {dataset.name!r}", {})

    reader = DatasetReader(
        signature,
        dataset.inputs,
        config.calibration_samples,
        config.batch_size,
        ctx.is_cancelled,
        progress,
    )
    op_types = check_op_types(config.op_types, config.format, "config.op_types")
    op_types = op_types or sorted(quantizable_ops("qdq"))  # what quantize_static calibrates
    options = _calibrator_options(config)
    compute_ranges(prepared, reader, config.method, op_types, options, cache, ctx.threads)
    return reader.num_samples


def _calibrator_options(config: StaticConfig) -> dict[str, Any]:
    """extra_options of ORT's create_calibrator for the configured method."""
    if config.method == "entropy":
        return {"num_bins": config.entropy_bins, "num_quantized_bins": QUANTIZED_BINS}
    if config.method == "percentile":
        return {"percentile": config.percentile}
    return {}


def quantize(
    prepared: Path,
    dst: Path,
    config: StaticConfig,
    cache: Path,
    nodes_to_exclude: list[str] | None = None,
) -> None:
    """Write the statically quantized `prepared` model to `dst`, with the activation ranges
    of the calibration cache `cache` (see `calibrate`)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from compressors.quantization.calibration import METHODS

    quantize_static(
        prepared,
        dst,
        calibration_data_reader=None,
        quant_format=QuantFormat.QDQ if config.format == "qdq" else QuantFormat.QOperator,
        op_types_to_quantize=check_op_types(config.op_types, config.format, "config.op_types"),
        per_channel=config.per_channel,
        reduce_range=config.reduce_range,
        activation_type=QuantType.QUInt8 if config.activation_type == "uint8" else QuantType.QInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=nodes_to_exclude,
        calibrate_method=METHODS[config.method],
        calibration_cache_path=cache,
    )


def prepare_checked(
    artifact: Artifact, config: StaticConfig, work_dir: Path
) -> tuple[Path, list[str], dict[str, Any]]:
    """Refuse non-fp32 models, pre-process, and check nodes_to_exclude on the result."""
    model = load_model(artifact.path)
    require_fp32(model, NAME)
    prepared, report = preprocess(artifact.path, work_dir, config)
    if prepared != artifact.path:
        model = load_model(prepared)
    hint = " (after quant_pre_process; preprocess: false keeps the graph as uploaded)"
    field = "config.nodes_to_exclude"
    hint = hint if report["ran"] else ""
    return prepared, check_nodes(model, config.nodes_to_exclude, field, hint), report


@register
class QuantizeStatic(Technique):
    name = NAME
    config_cls = StaticConfig
    description = "ONNX Runtime static int8 (QDQ), calibrated with minmax/entropy/percentile."

    def apply(self, artifact: Artifact, config: StaticConfig, ctx: StepContext) -> StepResult:
        dataset = ctx.dataset(ROLE_CALIBRATION, NAME)
        prepared, excluded, preprocessed = prepare_checked(artifact, config, ctx.work_dir)
        cache = ctx.work_dir / "calibration.json"
        samples = calibrate(prepared, artifact.signature, dataset, config, ctx, cache, 0.8)
        out = ctx.work_dir / "quantized.onnx"
        quantize(prepared, out, config, cache, excluded)
        result = artifact_for(out)
        report = {
            "preprocess": preprocessed,
            "calibration": _calibration_report(dataset, config, samples),
            "format": config.format,
            "activation_type": config.activation_type,
            "per_channel": config.per_channel,
            "nodes_excluded": excluded,
            **size_report(artifact.path, out),
            "ops": op_histogram(load_model(out)),
        }
        ctx.progress(1.0, f"quantized: {report['size_ratio']:.2f}x the size", {})
        return StepResult(result, report)


def _calibration_report(dataset: Dataset, config: StaticConfig, samples: int) -> dict[str, Any]:
    report: dict[str, Any] = {"dataset": dataset.name, "method": config.method, "samples": samples}
    if config.method == "percentile":
        report["percentile"] = config.percentile
    if config.method == "entropy":
        report["entropy_bins"] = config.entropy_bins
    return report
