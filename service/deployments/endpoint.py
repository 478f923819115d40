"""One served endpoint (immutable) and the inference path through it.

An `Endpoint` bundles a deployment record with its routing table and, per target that
may answer, the copies to make: shadows, and the baseline rerun on requests a canary
answered while its plan checks agreement. A change builds a new Endpoint and swaps it in.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from service import metrics
from service.deployments.router import Route
from service.deployments.shadow import ShadowJob, ShadowQueue
from service.deployments.targets import ServingTarget
from service.serving.dataplane import Decoder, InferResult
from service.serving.sessions import SessionManager
from service.store.deployment_records import DeploymentRecord

# Codes that are the caller's fault: not held against a target's error rate.
CLIENT_CODES = frozenset({"INVALID_ARGUMENT", "NOT_FOUND", "CANCELLED", "UNAUTHENTICATED"})

Copies = dict[str, tuple[tuple[ServingTarget, float], ...]]


@dataclass(frozen=True, eq=False)
class Endpoint:
    record: DeploymentRecord
    route: Route[ServingTarget]
    copies: Copies  # answering target name -> (target to run a copy on, sample rate)

    @property
    def targets(self) -> tuple[ServingTarget, ...]:
        return self.route.targets

    def target(self, name: str) -> ServingTarget:
        return next(t for t in self.route.targets if t.name == name)


def build_endpoint(record: DeploymentRecord, targets: list[ServingTarget]) -> Endpoint:
    route = Route(record.name, targets)
    copies: dict[str, list[tuple[ServingTarget, float]]] = {t.name: [] for t in targets}
    for answering in targets:
        if answering.is_shadow:
            continue
        for shadow in route.shadows:
            if shadow.session_key != answering.session_key:  # same session: nothing to learn
                copies[answering.name].append((shadow, shadow.spec.sample_rate))
    plan = record.canary
    if record.canary_running and plan is not None and plan.min_agreement > 0:
        baseline = next(t for t in targets if not t.is_shadow and t.name != plan.canary)
        copies[plan.canary].append((baseline, 1.0))
    return Endpoint(record, route, {name: tuple(c) for name, c in copies.items()})


def infer(
    endpoint: Endpoint,
    sessions: SessionManager,
    shadows: ShadowQueue,
    version: str,
    route_key: str,
    decode: Decoder,
) -> InferResult:
    """Route, run on the chosen target's shared session, count, queue the copies."""
    target = endpoint.route.choose(version, route_key)
    started = time.perf_counter()
    with metrics.count_outcome(_counter(target, started)):
        # The per-model series count routed requests too, as they count plain ones.
        with (
            sessions.acquire_servable(*target.session_args) as model,
            metrics.count_outcome(_model_counter(model.labels)),
        ):
            inputs, wanted = decode(model.signature)
            metrics.INFERENCE_QUEUE_DURATION.labels(*model.labels).observe(
                time.perf_counter() - started
            )
            outputs = model.session.run(inputs, wanted)
        elapsed = time.perf_counter() - started
        metrics.INFERENCE_DURATION.labels(*model.labels).observe(elapsed)
        metrics.ENDPOINT_DURATION.labels(*target.labels).observe(elapsed)
    for run, rate in endpoint.copies[target.name]:
        if rate >= 1.0 or random.random() < rate:
            shadows.submit(ShadowJob(run, target, inputs, wanted, outputs))
    return InferResult(model.servable, model.runtime.name, outputs)


def _counter(target: ServingTarget, started: float) -> Callable[[str], None]:
    def count(code: str) -> None:
        metrics.ENDPOINT_REQUESTS.labels(*target.labels, code).inc()
        if code not in CLIENT_CODES:
            target.stats.record(time.perf_counter() - started, code == "OK")

    return count


def _model_counter(labels: tuple[str, str, str]) -> Callable[[str], None]:
    return lambda code: metrics.INFERENCE_REQUESTS.labels(*labels, code).inc()
