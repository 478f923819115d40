"""Canary rollouts: promote step by step while the canary meets its SLOs, else roll back.

A background thread looks at every deployment whose plan is RUNNING. A step is judged
once the canary has answered `min_requests` requests in it (counted from the step's
start): an SLO broken relative to the baseline (error rate increase, p99 latency ratio,
agreement) rolls back at once (canary weight 0, reason recorded in the deployment and
counted in `pareto_rollbacks_total`); otherwise, once `dwell_seconds` have passed, the
canary moves to the next step, and after the last one the plan is PROMOTED. Counters of a
step live in memory: after a restart the current step starts counting again.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace

import numpy as np

from pareto_core.errors import ParetoError
from service import metrics
from service.deployments.endpoint import Endpoint
from service.deployments.manager import DeploymentManager
from service.deployments.stats import Mark, Window
from service.store.deployment_records import (
    CANARY_PROMOTED,
    CANARY_ROLLED_BACK,
    CANARY_RUNNING,
    CanaryPlan,
    CanaryStatus,
    DeploymentRecord,
)
from service.store.sql_codec import now

log = logging.getLogger(__name__)

WAIT, PROMOTE, ROLLBACK = "wait", "promote", "rollback"
MIN_BASELINE_SAMPLES = 20  # fewer in the step: compare with the baseline's recent history


@dataclass(frozen=True)
class Verdict:
    action: str
    reason: str = ""
    kind: str = ""  # rollbacks: error_rate, latency, agreement


def judge(
    plan: CanaryPlan,
    step: int,
    canary: Window,
    baseline: Window,
    baseline_latencies: np.ndarray,
    elapsed_s: float,
) -> Verdict:
    """What to do with the current step, from what happened since it started."""
    if canary.requests < plan.min_requests:
        return Verdict(WAIT)
    where = f"at step {step} ({plan.steps[step - 1]:g}%), {canary.requests} canary requests"
    increase = canary.error_rate - baseline.error_rate
    if increase > plan.max_error_rate_increase:
        return Verdict(
            ROLLBACK,
            f"error rate {canary.error_rate:.2%} vs baseline {baseline.error_rate:.2%} "
            f"(allowed +{plan.max_error_rate_increase:.2%}) {where}",
            "error_rate",
        )
    if plan.max_p99_latency_ratio and canary.latencies_s.size and baseline_latencies.size:
        ratio = np.percentile(canary.latencies_s, 99) / np.percentile(baseline_latencies, 99)
        if ratio > plan.max_p99_latency_ratio:
            return Verdict(
                ROLLBACK,
                f"p99 latency {ratio:.2f}x the baseline's (allowed "
                f"{plan.max_p99_latency_ratio:g}x) {where}",
                "latency",
            )
    if plan.min_agreement:
        if canary.comparisons == 0:
            return Verdict(WAIT)
        value = canary.agreement(plan.agreement_measure)
        if value < plan.min_agreement:
            return Verdict(
                ROLLBACK,
                f"{plan.agreement_measure} agreement {value:.4f} with the baseline over "
                f"{canary.comparisons} comparisons (required {plan.min_agreement:g}) {where}",
                "agreement",
            )
    if elapsed_s < plan.dwell_seconds:
        return Verdict(WAIT)
    return Verdict(PROMOTE, f"step {step} ({plan.steps[step - 1]:g}%) met its SLOs")


def next_record(record: DeploymentRecord, verdict: Verdict, baseline: str) -> DeploymentRecord:
    plan, status = record.canary, record.canary_status
    assert plan is not None and status is not None
    if verdict.action == ROLLBACK:
        weights = {plan.canary: 0.0, baseline: 100.0}
        status = CanaryStatus(CANARY_ROLLED_BACK, 0, verdict.reason, now())
    elif status.step < len(plan.steps):
        share = plan.steps[status.step]
        weights = {plan.canary: share, baseline: 100.0 - share}
        status = CanaryStatus(CANARY_RUNNING, status.step + 1, verdict.reason, now())
    else:
        weights = {}
        status = CanaryStatus(CANARY_PROMOTED, status.step, verdict.reason, now())
    return replace(record.with_weights(weights), canary_status=status)


@dataclass(frozen=True)
class StepRun:
    revision: int
    started: float  # time.monotonic()
    marks: dict[str, Mark]


class CanaryController:
    def __init__(self, manager: DeploymentManager, interval_s: float) -> None:
        self._manager = manager
        self._interval_s = interval_s
        self._runs: dict[str, StepRun] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="canary", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.check_all()

    def check_all(self) -> None:
        running = [e for e in self._manager.endpoints() if e.record.canary_running]
        self._runs = {e.record.name: r for e in running if (r := self._runs.get(e.record.name))}
        for endpoint in running:
            try:
                self.check(endpoint)
            except ParetoError as exc:  # e.g. changed meanwhile: judged again next time
                log.warning("canary of %r not advanced: %s", endpoint.record.name, exc)
            except Exception:
                log.exception("canary check of %r failed", endpoint.record.name)

    def check(self, endpoint: Endpoint) -> None:
        record = endpoint.record
        plan, status = record.canary, record.canary_status
        assert plan is not None and status is not None
        run = self._runs.get(record.name)
        if run is None or run.revision != record.revision:
            marks = {t.name: t.stats.mark() for t in endpoint.targets}
            run = StepRun(record.revision, time.monotonic(), marks)
            self._runs[record.name] = run
        canary = endpoint.target(plan.canary)
        baseline = next(t for t in endpoint.route.targets if not t.is_shadow and t is not canary)
        base_window = baseline.stats.window(run.marks[baseline.name])
        base_latencies = base_window.latencies_s
        if base_latencies.size < MIN_BASELINE_SAMPLES:
            base_latencies = baseline.stats.window().latencies_s
        verdict = judge(
            plan,
            status.step,
            canary.stats.window(run.marks[canary.name]),
            base_window,
            base_latencies,
            time.monotonic() - run.started,
        )
        if verdict.action == WAIT:
            return
        stored = self._manager.apply(next_record(record, verdict, baseline.name))
        if verdict.action == ROLLBACK:
            metrics.ROLLBACKS.labels(*canary.labels, verdict.kind).inc()
            log.warning("canary %r of %r rolled back: %s", canary.name, record.name, verdict.reason)
        else:
            log.info("canary %r of %r: %s", canary.name, record.name, stored.canary_status)
