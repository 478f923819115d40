"""Per-target comparison of an endpoint, from the gateway's own counters.

Latency percentiles come from the last `window` successful requests of each target with a
95% distribution-free confidence interval (order statistics: the ranks n*q -+ 1.96 *
sqrt(n*q*(1-q)), i.e. the normal approximation to the binomial). Each target is tested
against the baseline (the canary plan's baseline, else the first primary): latency with
the two-sided Mann-Whitney U test (normal approximation, tie-corrected), error rate with
the two-sided two-proportion z-test (pooled). Significant means p < ALPHA.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from service.deployments.endpoint import Endpoint
from service.deployments.stats import Window
from service.deployments.targets import ServingTarget

ALPHA = 0.05
Z95 = 1.959963984540054
METHOD = (
    "p50/p99 over the last successful requests, 95% CI from order statistics (binomial, "
    "normal approximation); latency vs baseline: two-sided Mann-Whitney U test "
    "(normal approximation, tie-corrected); errors vs baseline: two-sided two-proportion "
    f"z-test (pooled); significant: p < {ALPHA}"
)


def quantile_ci(samples: np.ndarray, q: float) -> dict[str, float]:
    """The q-quantile (ms) with its 95% CI; samples in seconds."""
    x = np.sort(samples) * 1e3
    n = x.size
    half = Z95 * math.sqrt(n * q * (1 - q))
    low = min(max(math.floor(n * q - half), 0), n - 1)
    high = min(max(math.ceil(n * q + half), 0), n - 1)
    return {"value": float(np.percentile(x, q * 100)), "low": float(x[low]), "high": float(x[high])}


def mann_whitney_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value that `a` and `b` come from the same distribution."""
    n1, n2 = a.size, b.size
    if n1 == 0 or n2 == 0:
        return 1.0
    _, inverse, counts = np.unique(np.concatenate([a, b]), return_inverse=True, return_counts=True)
    average_ranks = np.cumsum(counts) - (counts - 1) / 2.0
    u = average_ranks[inverse[:n1]].sum() - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    ties = float(np.sum(counts.astype(np.float64) ** 3 - counts))
    variance = n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:
        return 1.0
    z = (abs(u - n1 * n2 / 2.0) - 0.5) / math.sqrt(variance)
    return math.erfc(max(z, 0.0) / math.sqrt(2))


def two_proportion_p(e1: int, n1: int, e2: int, n2: int) -> float:
    """Two-sided p-value that error rates e1/n1 and e2/n2 are equal."""
    if n1 == 0 or n2 == 0:
        return 1.0
    pooled = (e1 + e2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    return math.erfc(abs(e1 / n1 - e2 / n2) / se / math.sqrt(2))


def baseline_of(endpoint: Endpoint) -> ServingTarget:
    plan = endpoint.record.canary
    primaries = [t for t in endpoint.targets if not t.is_shadow]
    if plan is not None:
        return next(t for t in primaries if t.name != plan.canary)
    return primaries[0]


def build_report(endpoint: Endpoint) -> dict[str, Any]:
    """The report as `pareto.v1.DeploymentReport` JSON (proto field names)."""
    baseline = baseline_of(endpoint)
    base = baseline.stats.window()
    rows = []
    for target in endpoint.targets:
        window = target.stats.window()
        row = _row(target, window)
        if target is not baseline:
            row["latency_test"] = _test(mann_whitney_p(window.latencies_s, base.latencies_s))
            row["error_test"] = _test(
                two_proportion_p(window.errors, window.requests, base.errors, base.requests)
            )
        rows.append(row)
    return {
        "name": endpoint.record.name,
        "baseline": baseline.name,
        "targets": rows,
        "method": METHOD,
        "alpha": ALPHA,
    }


def _row(target: ServingTarget, window: Window) -> dict[str, Any]:
    row: dict[str, Any] = {
        "target": target.name,
        "model_version": target.version,
        "variant": target.servable.variant_label,
        "runtime": target.runtime_label,
        "role": f"ROLE_{target.spec.role.upper()}",
        "weight": target.weight,
        "requests": window.requests,
        "errors": window.errors,
        "error_rate": window.error_rate,
        "latency_samples": int(window.latencies_s.size),
        "comparisons": window.comparisons,
        "shadow_dropped": window.dropped,
    }
    if window.latencies_s.size:
        row["p50_ms"] = quantile_ci(window.latencies_s, 0.5)
        row["p99_ms"] = quantile_ci(window.latencies_s, 0.99)
    if window.comparisons:
        row |= {
            "top1_agreement": window.top1,
            "cosine_mean": window.cosine,
            "max_abs_diff": window.max_abs_diff,
        }
    return row


def _test(p_value: float) -> dict[str, Any]:
    return {"p_value": p_value, "significant": p_value < ALPHA}
