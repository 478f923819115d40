"""quantize.accuracy_aware: int8 (dynamic or static) that keeps the most sensitive layers in
float32 until the job's quality budget holds.

Sensitivity is measured by reverting one layer at a time (as NNCF's accuracy control does):
for every weighted node (MatMul, Gemm, Conv, Attention, ...) the model is quantized with
everything but that node, and its sensitivity is the gain in quality over the fully
quantized model on the evaluation samples. The table is always measured (it goes with the
variant), even when the fully quantized model already meets the budget. That costs one
quantization and one evaluation per node (static quantization calibrates once and reuses
the ranges), and it measures exactly what the search then decides: what keeping that node
in float32 buys, with all the others quantized. Nodes are ranked by the figure the budget
constrains (by default: accuracy against labels when the evaluation data has labels that
fit the outputs, else mean cosine to the reference's outputs); mean cosine breaks ties.

The search then keeps the top 1, 2, ... nodes in float32, re-quantizing and re-measuring
each time, until `compressors.measure.budget.check_budget` passes for the job's quality budget
(default: accuracy drop <= 1 pp with labels, else mean cosine >= 0.99) or `max_fp32_nodes`
is reached. The reference is the job's parent model when it is ONNX (the budget is checked
against it), else this step's input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from compressors.base import (
    ROLE_CALIBRATION,
    ROLE_EVALUATION,
    Artifact,
    Dataset,
    StepContext,
    StepResult,
    Technique,
    TechniqueConfig,
)
from compressors.graph.files import artifact_for, load_model, size_report
from compressors.graph.qdq import LINEAR_OPS
from compressors.quantization import dynamic as dynamic_q
from compressors.quantization import static as static_q
from compressors.quantization.dynamic import DynamicConfig
from compressors.quantization.options import quantizable_ops, weighted_nodes
from compressors.quantization.sensitivity import Scorer, rank
from compressors.quantization.static import StaticConfig
from compressors.registry import register
from pareto_core.errors import Cancelled, FailedPrecondition
from pareto_core.formats import FORMAT_ONNX

NAME = "quantize.accuracy_aware"

# (output path, node names kept in float32 besides the configured ones) -> writes a model.
QuantizeFn = Callable[[Path, list[str]], None]


class AccuracyAwareConfig(TechniqueConfig):
    """Dynamic or static int8 with the most sensitive layers kept in float32."""

    base: Literal["dynamic", "static"] = "dynamic"
    dynamic: DynamicConfig = Field(default_factory=DynamicConfig)
    static: StaticConfig = Field(default_factory=StaticConfig)
    max_fp32_nodes: int = Field(8, ge=1, le=1000, description="most nodes kept in float32")
    max_candidates: int = Field(
        64, ge=1, le=10_000, description="nodes analyzed (the largest weights first)"
    )
    eval_samples: int = Field(256, ge=1, le=100_000, description="evaluation samples used")
    batch_size: int = Field(32, ge=1, le=4096, description="evaluation batch size")


def _evaluation_dataset(ctx: StepContext) -> Dataset:
    dataset = ctx.datasets.get(ROLE_EVALUATION) or ctx.datasets.get(ROLE_CALIBRATION)
    if dataset is None:
        raise FailedPrecondition(
            f"{NAME} needs an {ROLE_EVALUATION!r} dataset (or a {ROLE_CALIBRATION!r} one) to "
            f"measure quality; pass datasets={{{ROLE_EVALUATION!r}: NAME}}"
        )
    return dataset


@dataclass(frozen=True)
class Quantizer:
    """How one base quantizes: the function, the graph it quantizes, the op types it
    quantizes there, the nodes it keeps float anyway, and the preparation report."""

    quantize: QuantizeFn
    prepared: Path
    op_types: set[str]
    excluded: set[str]
    report: dict[str, Any]


def _quantizer(artifact: Artifact, config: AccuracyAwareConfig, ctx: StepContext) -> Quantizer:
    if config.base == "dynamic":
        cfg = config.dynamic
        prepared, excluded, report = dynamic_q.prepare_checked(artifact, cfg, ctx.work_dir)

        def run_dynamic(out: Path, fp32: list[str]) -> None:
            dynamic_q.quantize(prepared, out, cfg, excluded + fp32)

        ops = set(cfg.op_types) or quantizable_ops("dynamic")
        if "MatMul" in ops:
            ops.add("Gemm")  # ORT's dynamic quantizer turns Gemm into MatMul (+ Add) first
        return Quantizer(run_dynamic, prepared, ops, set(excluded), {"optimizer": report})
    scfg = config.static
    calibration = ctx.dataset(ROLE_CALIBRATION, NAME)
    static = static_q.prepare_checked(artifact, scfg, ctx, calibration)
    cache = ctx.work_dir / "calibration.json"  # calibrated once, used by every candidate
    samples = static_q.calibrate(static, artifact.signature, calibration, scfg, ctx, cache, 0.1)

    def run_static(out: Path, fp32: list[str]) -> None:
        static_q.quantize(static, out, scfg, cache, fp32)

    ops = set(scfg.op_types) or (set(LINEAR_OPS) if static.transformer else None)
    calibrated = {"dataset": calibration.name, "method": scfg.method, "samples": samples}
    report = {**static.report, "calibration": calibrated}
    ops = ops or quantizable_ops(scfg.format)
    return Quantizer(run_static, static.path, ops, set(static.excluded), report)


def _candidates(quantizer: Quantizer) -> list[dict[str, Any]]:
    """The weighted nodes the base quantizes (largest first): the layers whose sensitivity
    is measured; in a transformer, its linear layers."""
    model = load_model(quantizer.prepared)
    nodes = [
        n for n in weighted_nodes(model, quantizer.op_types) if n["node"] not in quantizer.excluded
    ]
    return sorted(nodes, key=lambda n: n["params"], reverse=True)


class Search:
    """One accuracy-aware search: sensitivity of each candidate, then the greedy fallback."""

    def __init__(
        self, quantize: QuantizeFn, scorer: Scorer, ctx: StepContext, budget: dict[str, Any]
    ) -> None:
        self.quantize, self.scorer, self.ctx, self.budget = quantize, scorer, ctx, budget
        self.runs = 0
        self.tries: list[Choice] = []

    def measure(self, fp32: list[str], keep: bool = False) -> tuple[Path, dict[str, float]]:
        if self.ctx.is_cancelled():
            raise Cancelled(f"{NAME} cancelled")
        self.runs += 1
        out = self.ctx.work_dir / f"candidate-{self.runs}.onnx"
        self.quantize(out, fp32)
        quality = self.scorer.score(out)
        if not keep:
            out.unlink()
        return out, quality

    def check(self, quality: dict[str, float]) -> tuple[bool, str]:
        from compressors.measure.budget import check_budget

        parent = {"quality": self.scorer.reference_quality}
        return check_budget(parent, {"quality": quality}, self.budget)

    def sensitivity(self, candidates: list[dict[str, Any]], baseline: dict) -> list[dict]:
        entries = []
        for i, node in enumerate(candidates):
            self.ctx.progress(0.1 + 0.6 * i / len(candidates), f"sensitivity of {node['node']}", {})
            _, quality = self.measure([node["node"]])
            entries.append({**node, "quality": quality})
        return rank(self.scorer, baseline, entries)

    def greedy(self, ranked: list[dict], limit: int) -> Choice:
        """Keep the top k nodes in float32 for k = 1.. until the budget holds (or k = limit);
        the first model that meets the budget, else the best one tried."""
        tries: list[Choice] = []
        for k in range(1, min(limit, len(ranked)) + 1):
            fp32 = [e["node"] for e in ranked[:k]]
            self.ctx.progress(0.7 + 0.3 * k / limit, f"{k} node(s) kept in float32", {})
            path, quality = self.measure(fp32, keep=True)
            tries.append(Choice(path, quality, fp32, *self.check(quality)))
            if tries[-1].budget_ok:
                break
        if not tries:
            raise FailedPrecondition(f"{NAME}: the model has no weighted node to keep in float32")
        best = (
            tries[-1]
            if tries[-1].budget_ok
            else max(tries, key=lambda t: self.scorer.key(t.quality))
        )
        for t in tries:
            if t is not best:
                t.path.unlink()
        self.tries = tries
        return best


@dataclass
class Choice:
    """One model tried: where it is, its quality, its float32 nodes, the budget verdict."""

    path: Path
    quality: dict[str, float]
    fp32_nodes: list[str]
    budget_ok: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "fp32_nodes": self.fp32_nodes,
            "quality": self.quality,
            "budget_ok": self.budget_ok,
            "reason": self.reason,
        }


def search(
    artifact: Artifact, config: AccuracyAwareConfig, ctx: StepContext, evaluation: Dataset
) -> tuple[Choice, dict[str, Any]]:
    """The chosen model and the report: sensitivity table, search tries, final quality."""
    quantizer = _quantizer(artifact, config, ctx)
    budget = dict(ctx.quality_budget)
    reference = ctx.parent if ctx.parent.format == FORMAT_ONNX else artifact
    scorer = Scorer(
        reference, evaluation, config.eval_samples, ctx.threads, config.batch_size, budget
    )
    s = Search(quantizer.quantize, scorer, ctx, budget)
    full_path, full_quality = s.measure([], keep=True)
    full = Choice(full_path, full_quality, [], *s.check(full_quality))
    candidates = _candidates(quantizer)
    ranked = s.sensitivity(candidates[: config.max_candidates], full_quality)
    chosen = full if full.budget_ok else s.greedy(ranked, config.max_fp32_nodes)
    if chosen is not full:
        full.path.unlink()
    not_analyzed = [c["node"] for c in candidates[config.max_candidates :]]
    sensitivity = {"sensitivity": ranked, "not_analyzed": not_analyzed}
    report = {
        "base": config.base,
        **quantizer.report,
        **_quality_report(scorer, evaluation, reference is ctx.parent),
        "fully_quantized": full.to_json(),
        **sensitivity,
        "search": [t.to_json() for t in s.tries],
        "fp32_nodes": chosen.fp32_nodes,
        "quality": chosen.quality,
        "budget_ok": chosen.budget_ok,
        "budget_reason": chosen.reason,
    }
    return chosen, report


def _quality_report(scorer: Scorer, evaluation: Dataset, is_parent: bool) -> dict[str, Any]:
    return {
        "metric": scorer.metric,
        "evaluation": {
            "dataset": evaluation.name,
            "samples": len(scorer.reference_outputs),
            "reference": "parent" if is_parent else "step input",
        },
        "reference_quality": scorer.reference_quality,
    }


@register
class QuantizeAccuracyAware(Technique):
    name = NAME
    config_cls = AccuracyAwareConfig
    description = "int8 that keeps the most sensitive layers in float32 to meet the budget."

    def apply(
        self, artifact: Artifact, config: AccuracyAwareConfig, ctx: StepContext
    ) -> StepResult:
        evaluation = _evaluation_dataset(ctx)
        ctx.progress(0.0, "preparing and measuring the reference", {})
        chosen, report = search(artifact, config, ctx, evaluation)
        report.update(size_report(artifact.path, chosen.path))
        n, ok = len(chosen.fp32_nodes), chosen.budget_ok
        ctx.progress(1.0, f"{n} node(s) kept in float32; budget ok: {ok}", {})
        return StepResult(artifact_for(chosen.path), report)
