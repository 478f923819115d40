"""Report statistics, target counters, agreement measures and canary verdicts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from service.deployments.canary import PROMOTE, ROLLBACK, WAIT, judge
from service.deployments.compare import compare
from service.deployments.report import mann_whitney_p, quantile_ci, two_proportion_p
from service.deployments.stats import TargetStats
from service.store.deployment_records import CanaryPlan


def test_mann_whitney_matches_scipy():
    rng = np.random.default_rng(0)
    a = rng.lognormal(0.0, 0.3, 300).round(2)  # rounded: ties exercise the correction
    b = rng.lognormal(0.1, 0.3, 200).round(2)
    want = scipy_stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic").pvalue
    assert mann_whitney_p(a, b) == pytest.approx(want, rel=1e-6)
    assert mann_whitney_p(a, np.array([])) == 1.0


def test_two_proportion_z_test():
    assert two_proportion_p(0, 100, 0, 100) == 1.0
    assert two_proportion_p(30, 100, 5, 100) < 1e-4
    assert two_proportion_p(5, 100, 6, 100) > 0.5


def test_quantile_confidence_interval_brackets_the_estimate():
    samples = np.random.default_rng(1).exponential(0.001, 2000)
    ci = quantile_ci(samples, 0.99)
    assert ci["low"] <= ci["value"] <= ci["high"]
    assert ci["value"] == pytest.approx(np.percentile(samples, 99) * 1e3)


def test_target_stats_windows_since_a_mark():
    stats = TargetStats(window=4)
    for i in range(3):
        stats.record(i / 1000, ok=True)
    stats.record(1.0, ok=False)
    mark = stats.mark()
    for i in range(6):
        stats.record(0.5 + i, ok=True)
    stats.record_comparison(1.0, 0.9, 0.2)
    window = stats.window(mark)
    assert (window.requests, window.errors, window.comparisons) == (6, 0, 1)
    assert list(window.latencies_s) == [2.5, 3.5, 4.5, 5.5]  # the ring keeps the last 4
    assert (window.top1, window.cosine, window.max_abs_diff) == (1.0, 0.9, 0.2)
    whole = stats.window()
    assert (whole.requests, whole.errors) == (10, 1) and whole.error_rate == 0.1


def test_agreement_of_classifier_and_embedding_outputs():
    x = np.array([[0.1, 0.9], [0.8, 0.2]], np.float32)
    y = np.array([[0.2, 0.8], [0.3, 0.7]], np.float32)
    result = compare({"logits": x}, {"logits": y}, ["logits"])
    assert result.top1 == 0.5
    assert result.max_abs_diff == pytest.approx(0.5)
    assert compare({"e": x}, {"e": x}, ["e"]).cosine == pytest.approx(1.0)


PLAN = CanaryPlan(
    "c",
    (10.0, 50.0),
    min_requests=10,
    dwell_seconds=5.0,
    max_p99_latency_ratio=2.0,
    max_error_rate_increase=0.05,
    min_agreement=0.9,
    agreement_measure="top1",
)


def window(requests=20, errors=0, latency=0.001, comparisons=5, top1=1.0):
    stats = TargetStats()
    for i in range(requests):
        stats.record(latency, ok=i >= errors)
    for _ in range(comparisons):
        stats.record_comparison(top1, 1.0, 0.0)
    return stats.window()


@pytest.mark.parametrize(
    ("canary", "elapsed", "action", "kind"),
    [
        (window(requests=5), 60.0, WAIT, ""),
        (window(errors=4), 0.0, ROLLBACK, "error_rate"),
        (window(latency=0.01), 0.0, ROLLBACK, "latency"),
        (window(top1=0.5), 0.0, ROLLBACK, "agreement"),
        (window(comparisons=0), 60.0, WAIT, ""),
        (window(), 1.0, WAIT, ""),
        (window(), 6.0, PROMOTE, ""),
    ],
)
def test_canary_verdicts(canary, elapsed, action, kind):
    baseline = window(comparisons=0)
    verdict = judge(PLAN, 1, canary, baseline, baseline.latencies_s, elapsed)
    assert (verdict.action, verdict.kind) == (action, kind)
    if action == ROLLBACK:
        assert "step 1 (10%)" in verdict.reason
