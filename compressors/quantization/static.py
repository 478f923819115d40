"""quantize.static: int8 weights and activations, activation ranges calibrated on a dataset.

Glue around `onnxruntime.quantization.quantize_static`: QDQ format by default (the portable
one; ONNX Runtime fuses QuantizeLinear/DequantizeLinear pairs into QLinearConv, QGemm, ...
at load), weights int8 (per channel by default), activations uint8 or int8, ranges from
minmax, entropy or percentile calibration on the job's "calibration" dataset. The model is
first run through ORT's quantization pre-processing (`quant_pre_process`: symbolic shape
inference and basic graph optimizations) where that succeeds.

Transformers (self-attention in the graph, `transformer: auto`, or `always`) are quantized
the way they survive it: only the linear layers (MatMul/Gemm with a constant weight) are
int8 and their outputs stay float (ORT runs them as MatMulIntegerToFloat); the attention
products of two activations, Softmax, LayerNorm and the residual Adds stay float unless
the config names them (`attention_matmuls`, `op_types`), and the residual stream is never
rounded (see `compressors.graph.qdq`). Quantizing every op, as for a CNN, takes MiniLM to a
pooled cosine of 0.34; this keeps it above 0.99 and runs 2.5-2.9x faster than fp32.
Optionally, SmoothQuant (`smooth_quant_alpha`, see `smooth_quant`) first moves activation
outliers into the weights.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
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
from compressors.graph.qdq import LINEAR_OPS
from compressors.quantization.options import (
    NodeName,
    OpType,
    PowerOfTwo,
    check_nodes,
    check_op_types,
    quantizable_ops,
)
from compressors.registry import register
from pareto_core.errors import FailedPrecondition, InvalidArgument
from pareto_core.tensors import Signature

NAME = "quantize.static"
DEFAULT_PERCENTILE = 99.999
DEFAULT_ENTROPY_BINS = 512
QUANTIZED_BINS = 128  # entropy: the int8 histogram the KL divergence compares against
# Tables this short (token types, segments) stay at 8 bits with small_table_bits 4: every
# token adds one of their few rows, so 4-bit rounding is a bias on every token (MiniLM's
# 2-row token-type table at 4 bits: pooled cosine 0.9991 alone, at 8 bits 0.99999).
EIGHT_BITS_BELOW_ROWS = 64


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
    transformer: Literal["auto", "always", "never"] = Field(
        "auto",
        description="linear layers only, attention and residuals float: auto = when the "
        "graph has self-attention (format qdq)",
    )
    attention_matmuls: bool = Field(
        False, description="transformer mode: quantize the activation x activation MatMuls too"
    )
    float_linear_layers: tuple[int, ...] = Field(
        (),
        max_length=64,
        description="transformer mode: linear layers kept float, by position among the "
        "linear layers in graph order (0 = first, -1 = last)",
    )
    embeddings: Literal["auto", "never"] = Field(
        "auto",
        description="transformer mode: embedding tables to 8 bits (auto: per column always, "
        "per block when ONNX Runtime runs GatherBlockQuantized on the CPU)",
    )
    embedding_scales: Literal["column", "block"] = Field(
        "column",
        description="large tables (>= small_table_rows rows): column = one scale per "
        "embedding dimension (Gather + DequantizeLinear); block = one per embedding_block "
        "values of a row (GatherBlockQuantized, larger)",
    )
    embedding_block: PowerOfTwo = Field(
        32, ge=16, le=1024, description="values per scale of the GatherBlockQuantized tables"
    )
    min_embedding_rows: int = Field(
        2, ge=1, le=10_000_000, description="embedding tables with fewer rows stay float"
    )
    small_table_rows: int = Field(
        4096,
        ge=1,
        le=10_000_000,
        description="tables with fewer rows (position, token type) are 'small'",
    )
    small_table_bits: Literal[4, 8] = Field(
        4,
        description="bits of the small tables of >= 64 rows (position): 4 = "
        "GatherBlockQuantized, blocks of embedding_block (where ORT runs it), 8 = per column",
    )
    smooth_quant_alpha: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="SmoothQuant: share of the activation range moved into the weights "
        "(0..1; MiniLM: 0.7); None = off",
    )

    @model_validator(mode="after")
    def _options_need_their_method(self) -> StaticConfig:
        if self.method != "percentile" and self.percentile != DEFAULT_PERCENTILE:
            raise ValueError(f"percentile applies to method 'percentile', not {self.method!r}")
        if self.method != "entropy" and self.entropy_bins != DEFAULT_ENTROPY_BINS:
            raise ValueError(f"entropy_bins applies to method 'entropy', not {self.method!r}")
        if self.transformer == "always" and self.format != "qdq":
            raise ValueError("transformer 'always' quantizes in format 'qdq', not 'qoperator'")
        if self.attention_matmuls and self.transformer == "never":
            raise ValueError("attention_matmuls applies to the transformer mode (not 'never')")
        if self.float_linear_layers and self.transformer == "never":
            raise ValueError("float_linear_layers applies to the transformer mode (not 'never')")
        if len(set(self.float_linear_layers)) != len(self.float_linear_layers):
            raise ValueError("float_linear_layers names a position twice")
        blocks = self.embedding_scales == "block" or self.small_table_bits == 4
        if not blocks and self.embedding_block != 32:
            raise ValueError(
                "embedding_block applies to embedding_scales 'block' or small_table_bits 4"
            )
        return self


@dataclass(frozen=True)
class Prepared:
    """The model `quantize_static` reads and what the technique decided about it."""

    path: Path
    # node names kept in float32: the config's, the attention products, SmoothQuant's Muls
    excluded: list[str]
    transformer: bool
    report: dict[str, Any] = field(default_factory=dict)


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
    prepared: Prepared,
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
    op_types = _op_types(config, prepared.transformer)
    op_types = op_types or sorted(quantizable_ops("qdq"))  # what quantize_static calibrates
    options = _calibrator_options(config)
    compute_ranges(prepared.path, reader, config.method, op_types, options, cache, ctx.threads)
    return reader.num_samples


def _op_types(config: StaticConfig, transformer: bool) -> list[str] | None:
    """The op types to quantize: the config's, else the linear layers of a transformer,
    else None (every type ORT can)."""
    named = check_op_types(config.op_types, config.format, "config.op_types")
    return named or (list(LINEAR_OPS) if transformer else None)


def _calibrator_options(config: StaticConfig) -> dict[str, Any]:
    """extra_options of ORT's create_calibrator for the configured method."""
    if config.method == "entropy":
        return {"num_bins": config.entropy_bins, "num_quantized_bins": QUANTIZED_BINS}
    if config.method == "percentile":
        return {"percentile": config.percentile}
    return {}


def quantize(
    prepared: Prepared,
    dst: Path,
    config: StaticConfig,
    cache: Path,
    nodes_to_exclude: list[str] | None = None,
) -> dict[str, Any]:
    """Write the statically quantized model to `dst`, with the activation ranges of the
    calibration cache `cache` (see `calibrate`), keeping `nodes_to_exclude` float too.
    Returns the report of the transformer-mode rewrites ({} otherwise)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from compressors.quantization.calibration import METHODS

    op_types = _op_types(config, prepared.transformer)
    extra: dict[str, Any] = {}
    if prepared.transformer:  # linear layers return float: MatMulIntegerToFloat
        extra["OpTypesToExcludeOutputQuantization"] = list(LINEAR_OPS)
    quantize_static(
        prepared.path,
        dst,
        calibration_data_reader=None,
        quant_format=QuantFormat.QDQ if config.format == "qdq" else QuantFormat.QOperator,
        op_types_to_quantize=op_types,
        per_channel=config.per_channel,
        reduce_range=config.reduce_range,
        activation_type=QuantType.QUInt8 if config.activation_type == "uint8" else QuantType.QInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=prepared.excluded + (nodes_to_exclude or []),
        calibrate_method=METHODS[config.method],
        calibration_cache_path=cache,
        extra_options=extra,
    )
    if not prepared.transformer:
        return {}
    return _transformer_rewrites(dst, set(op_types or LINEAR_OPS), config)


def _transformer_rewrites(
    path: Path, quantized_ops: set[str], config: StaticConfig
) -> dict[str, Any]:
    """Residuals and other readers of quantized tensors back on the float tensor, stored
    shapes dropped (see `compressors.graph.qdq`), embedding tables to 8 bits."""
    import onnx

    from compressors.graph.qdq import (
        drop_value_info,
        drop_zero_weight_zero_points,
        keep_float_readers,
    )

    model = load_model(path)
    report: dict[str, Any] = {"float_readers": keep_float_readers(model, quantized_ops)}
    report["zero_points_dropped"] = drop_zero_weight_zero_points(model)
    drop_value_info(model)
    report["embeddings"] = _embeddings(model, config)
    onnx.save(model, str(path))
    return report


def _embeddings(model: Any, config: StaticConfig) -> dict[str, Any]:
    """Embedding tables to 8 bits (small ones to 4) as configured, in place; the report."""
    from compressors.quantization.embeddings import (
        quantize_tables,
        quantize_tables_per_column,
        runtime_support,
    )

    if config.embeddings == "never":
        return {"quantized": [], "reason": "embeddings is 'never'"}
    small, large = (config.min_embedding_rows, config.small_table_rows), config.small_table_rows
    four_bits = (max(config.min_embedding_rows, EIGHT_BITS_BELOW_ROWS), config.small_table_rows)
    missing = runtime_support()
    reports = []
    if config.small_table_bits == 4 and missing is None:
        reports.append(quantize_tables(model, 4, config.embedding_block, False, *four_bits))
    if config.embedding_scales == "block" and missing is None:
        reports.append(quantize_tables(model, 8, config.embedding_block, False, large))
    else:
        reports.append(quantize_tables_per_column(model, large))
    # what the block passes left (no kernel: every table) goes to 8 bits per column
    reports.append(quantize_tables_per_column(model, *small))
    quantized = [t for r in reports for t in r["quantized"]]
    done = {t["table"] for t in quantized}
    skipped = {t["table"]: t for r in reports for t in r["skipped"] if t["table"] not in done}
    report: dict[str, Any] = {"quantized": quantized, "skipped": list(skipped.values())}
    if missing is not None and (config.small_table_bits == 4 or config.embedding_scales == "block"):
        report["per_column_because"] = missing
    return report


def prepare_checked(
    artifact: Artifact, config: StaticConfig, ctx: StepContext, dataset: Dataset
) -> Prepared:
    """Refuse non-fp32 models, pre-process, check nodes_to_exclude on the result, decide the
    transformer mode and apply SmoothQuant (calibrated on `dataset`) when configured."""
    model = load_model(artifact.path)
    require_fp32(model, NAME)
    path, preprocessed = preprocess(artifact.path, ctx.work_dir, config)
    model = load_model(path)
    path = _named(model, path, ctx.work_dir)
    hint = " (after quant_pre_process; preprocess: false keeps the graph as uploaded)"
    field_name = "config.nodes_to_exclude"
    hint = hint if preprocessed["ran"] else ""
    excluded = check_nodes(model, config.nodes_to_exclude, field_name, hint)
    transformer, mode = _transformer_mode(model, config, excluded)
    excluded += mode.get("float_attention_matmuls", []) + mode.get("float_linear_layers", [])
    report = {"preprocess": preprocessed, "transformer": _brief(mode)}
    if config.smooth_quant_alpha is not None:
        path, smoothed = _smooth(path, model, artifact.signature, dataset, config, ctx, excluded)
        excluded += smoothed.pop("mul_nodes")
        report["smooth_quant"] = smoothed
    return Prepared(path, excluded, transformer, report)


def _named(model: Any, path: Path, work_dir: Path) -> Path:
    """`path`, or a copy whose unnamed nodes got names (nodes are chosen by name)."""
    import onnx

    from compressors.graph.qdq import name_nodes

    if not name_nodes(model):
        return path
    named = work_dir / "named.onnx"
    onnx.save(model, str(named))
    return named


def _transformer_mode(
    model: Any, config: StaticConfig, excluded: list[str]
) -> tuple[bool, dict[str, Any]]:
    """(whether to quantize as a transformer, the report of that choice)."""
    from compressors.graph.qdq import activation_matmuls, linear_layers
    from compressors.graph.transformer import looks_like_transformer

    if config.transformer == "never":
        return False, {"used": False, "reason": "transformer is 'never'"}
    if config.format != "qdq":
        return _not_transformer(config, "format 'qoperator' quantizes every op")
    if config.transformer == "auto" and not looks_like_transformer(model):
        return _not_transformer(config, "no self-attention in the graph")
    attention = [] if config.attention_matmuls else activation_matmuls(model)
    kept = _float_linear(linear_layers(model), config.float_linear_layers)
    linear = [name for name in linear_layers(model) if name not in excluded + kept]
    return True, {
        "used": True,
        "linear_layers": linear,
        "float_attention_matmuls": attention,
        "float_linear_layers": kept,
    }


def _not_transformer(config: StaticConfig, reason: str) -> tuple[bool, dict[str, Any]]:
    """Not the transformer mode, for `reason`; refused when the config needs that mode."""
    if config.float_linear_layers:
        raise FailedPrecondition(
            f"{NAME}: config.float_linear_layers applies to the transformer mode, but {reason}"
        )
    return False, {"used": False, "reason": reason}


def _float_linear(linear: list[str], positions: tuple[int, ...]) -> list[str]:
    """The names of the linear layers at `positions` (negative: from the end)."""
    bad = [p for p in positions if not -len(linear) <= p < len(linear)]
    if bad:
        raise InvalidArgument(
            f"config.float_linear_layers: {bad} out of range: the graph has {len(linear)} "
            f"linear layers (positions {-len(linear)}..{len(linear) - 1})"
        )
    return [linear[p] for p in positions]


def _brief(mode: dict[str, Any]) -> dict[str, Any]:
    """The transformer report with counts instead of name lists."""
    if not mode["used"]:
        return mode
    return {
        "used": True,
        "linear_layers": len(mode["linear_layers"]),
        "float_attention_matmuls": len(mode["float_attention_matmuls"]),
        "float_linear_layers": mode["float_linear_layers"],
    }


def _smooth(
    path: Path,
    model: Any,
    signature: Signature,
    dataset: Dataset,
    config: StaticConfig,
    ctx: StepContext,
    excluded: list[str],
) -> tuple[Path, dict[str, Any]]:
    """SmoothQuant on the linear layers that will be quantized."""
    from compressors.graph.qdq import linear_layers
    from compressors.graph.run import feeds_for
    from compressors.quantization.smooth_quant import Group, channel_absmax, smooth

    assert config.smooth_quant_alpha is not None
    ctx.progress(0.05, f"SmoothQuant (alpha {config.smooth_quant_alpha:g})", {})
    feeds = feeds_for(signature, dataset.inputs, config.calibration_samples, "calibration")
    layers = set(linear_layers(model)) - set(excluded)
    run: dict[str, Any] = {"batch_size": config.batch_size, "threads": ctx.threads}
    run["is_cancelled"] = ctx.is_cancelled

    def absmax_of(groups: list[Group]) -> dict[str, Any]:
        return channel_absmax(path, groups, feeds, ctx.work_dir, **run)

    dst = ctx.work_dir / "smoothed.onnx"
    return dst, smooth(path, dst, layers, config.smooth_quant_alpha, absmax_of)


@register
class QuantizeStatic(Technique):
    name = NAME
    config_cls = StaticConfig
    description = "ONNX Runtime static int8 (QDQ), calibrated with minmax/entropy/percentile."

    def apply(self, artifact: Artifact, config: StaticConfig, ctx: StepContext) -> StepResult:
        dataset = ctx.dataset(ROLE_CALIBRATION, NAME)
        prepared = prepare_checked(artifact, config, ctx, dataset)
        cache = ctx.work_dir / "calibration.json"
        samples = calibrate(prepared, artifact.signature, dataset, config, ctx, cache, 0.8)
        out = ctx.work_dir / "quantized.onnx"
        rewrites = quantize(prepared, out, config, cache)
        result = artifact_for(out)
        report = {
            **prepared.report,
            **rewrites,
            "calibration": _calibration_report(dataset, config, samples),
            "format": config.format,
            "activation_type": config.activation_type,
            "per_channel": config.per_channel,
            "nodes_excluded": list(config.nodes_to_exclude),
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
