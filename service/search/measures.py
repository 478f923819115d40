"""From two Measurements (parent and variant, one run) to what the search works with.

* `metrics` / `parent`: absolute figures (pareto.v1.TrialMetrics) of each;
* `objectives`: "quality" (accuracy against labels, else mean cosine to the parent:
  maximized), then each objective of the spec as a ratio to the parent measured in the
  same run (minimized). Ratios cancel the machine's drift between trials;
* `constraints`: one value per limit, <= 0 when it holds (Optuna's convention): the
  relative excess over the limit, negative when under it;
* `feasible`, `violations` (one sentence per broken limit) and `excess` (sum of the
  relative excesses: how far from feasible, to find the closest trial when none is).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.search.spec import latency_percentile

# objective -> the TrialMetrics field it is computed from
OBJECTIVE_FIELDS = {
    "latency_p50": "latency_p50_ms",
    "latency_p99": "latency_p99_ms",
    "size": "size_bytes",
    "compressed_size": "compressed_size_bytes",
    "memory": "memory_bytes",
}
# constraint -> (TrialMetrics field or None for the latency percentile, unit for messages)
_LIMITS = {"max_size_bytes": ("size_bytes", "B"), "max_memory_bytes": ("memory_bytes", "B")}
_MIN_SCALE = 0.01


def quality_metric(parent_m: Mapping[str, Any]) -> str:
    return "accuracy" if "accuracy" in parent_m.get("quality", {}) else "cosine_mean"


def trial_metrics(m: Mapping[str, Any], metric: str, parent_quality: float, batch: int) -> dict:
    latency = next((e for e in m.get("latency", ()) if e["batch_size"] == batch), None)
    if latency is None:
        raise ValueError(f"latency at batch size {batch} was not measured")
    quality = float(m.get("quality", {}).get(metric, float("nan")))
    return {
        "quality": quality,
        "quality_drop": parent_quality - quality,
        "latency_p50_ms": float(latency["p50_ms"]),
        "latency_p99_ms": float(latency["p99_ms"]),
        "size_bytes": int(m.get("size_bytes", 0)),
        "compressed_size_bytes": int(m.get("compressed_size_bytes", 0)),
        "memory_bytes": int(m.get("memory_bytes", 0)),
    }


def _ratio(value: float, reference: float) -> float:
    return value / reference if reference > 0 else float(value)


def objective_values(
    metrics: Mapping[str, Any], parent: Mapping[str, Any], objectives: list[str]
) -> dict[str, float]:
    values = {"quality": float(metrics["quality"])}
    for name in objectives:
        field = OBJECTIVE_FIELDS[name]
        values[name] = _ratio(float(metrics[field]), float(parent[field]))
    return values


def _quality_excess(parent: Mapping, metrics: Mapping, budget: Mapping) -> float:
    """How far the quality is past its limit, relative to the limit's size (> 0)."""
    excess = 0.0
    if "max_accuracy_drop" in budget:
        limit = float(budget["max_accuracy_drop"])
        excess = (metrics["quality_drop"] - limit) / max(limit, _MIN_SCALE)
    elif "min_cosine" in budget or "min_top1_agreement" in budget:
        limit = float(budget.get("min_cosine", budget.get("min_top1_agreement", 0.0)))
        excess = (limit - metrics["quality"]) / max(1.0 - limit, _MIN_SCALE)
    return max(excess, 1e-6)


def constraint_checks(
    parent_m: Mapping[str, Any],
    variant_m: Mapping[str, Any],
    metrics: Mapping[str, Any],
    budget: Mapping[str, Any],
    spec: Mapping[str, Any],
) -> tuple[dict[str, float], list[str]]:
    """({constraint: value <= 0 when it holds}, [sentences for the broken ones])."""
    from compressors.measure.budget import check_budget

    values: dict[str, float] = {}
    violations: list[str] = []
    ok, reason = check_budget(parent_m, variant_m, budget)
    values["quality"] = 0.0 if ok else _quality_excess(parent_m, metrics, budget)
    if not ok:
        violations.append(reason)
    limits = dict(spec.get("constraints", {}))
    percentile = latency_percentile(spec)
    checked = {k: v for k, v in _LIMITS.items() if k in limits}
    if "max_latency_ms" in limits:
        checked["max_latency_ms"] = (f"latency_{percentile}_ms", "ms")
    for key, (field, unit) in checked.items():
        limit, value = float(limits[key]), float(metrics[field])
        values[key] = (value - limit) / limit
        if value > limit:
            violations.append(f"{field.removesuffix('_ms')} {value:.4g} {unit} > {key} {limit:g}")
    return values, violations


def summarize(
    parent_m: Mapping[str, Any],
    variant_m: Mapping[str, Any],
    budget: Mapping[str, Any],
    spec: Mapping[str, Any],
) -> dict[str, Any]:
    metric = quality_metric(parent_m)
    batch = int(spec["batch_size"])
    parent_quality = float(parent_m.get("quality", {}).get(metric, float("nan")))
    parent = trial_metrics(parent_m, metric, parent_quality, batch)
    metrics = trial_metrics(variant_m, metric, parent_quality, batch)
    constraints, violations = constraint_checks(parent_m, variant_m, metrics, budget, spec)
    return {
        "quality_metric": metric,
        "metrics": metrics,
        "parent": parent,
        "objectives": objective_values(metrics, parent, list(spec["objectives"])),
        "constraints": constraints,
        "feasible": not violations,
        "violations": violations,
        "excess": sum(max(0.0, v) for v in constraints.values()),
    }
