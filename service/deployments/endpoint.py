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
from service.serving.executor import Decoder, Executor, InferResult
from service.serving.servables import Servable
from service.serving.targets import Target
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
            if shadow.target.key != answering.target.key:  # same session: nothing to learn
                copies[answering.name].append((shadow, shadow.spec.sample_rate))
    plan = record.canary
    if record.canary_running and plan is not None and plan.min_agreement > 0:
        baseline = next(t for t in targets if not t.is_shadow and t.name != plan.canary)
        copies[plan.canary].append((baseline, 1.0))
    return Endpoint(record, route, {name: tuple(c) for name, c in copies.items()})


class DeployedRoute:
    """An endpoint as the data plane's `Route`: routed inference, metadata, readiness."""

    def __init__(self, endpoint: Endpoint, shadows: ShadowQueue) -> None:
        self._endpoint = endpoint
        self._shadows = shadows

    def infer(
        self,
        executor: Executor,
        version: str,
        route_key: str,
        decode: Decoder,
        deadline: float | None = None,
    ) -> InferResult:
        """Route, run on the chosen target, count, queue the copies."""
        endpoint = self._endpoint
        target = endpoint.route.choose(version, route_key)
        started = time.perf_counter()
        with metrics.count_outcome(_counter(target, started)):
            result = executor.run(target.target, decode, deadline=deadline)
            metrics.ENDPOINT_DURATION.labels(*target.labels).observe(time.perf_counter() - started)
        for run, rate in endpoint.copies[target.name]:
            if rate >= 1.0 or random.random() < rate:
                self._shadows.submit(
                    ShadowJob(run, target, result.inputs, result.wanted, result.outputs)
                )
        return result

    def describe(self, version: str) -> tuple[Servable, str]:
        """The pinned target, else the heaviest primary."""
        target = self._metadata_target(version)
        return target.servable, target.runtime_label

    def ready_targets(self, version: str) -> list[Target]:
        route = self._endpoint.route
        targets = [route.pinned(version)] if version else list(route.primaries)
        return [t.target for t in targets]

    def _metadata_target(self, version: str) -> ServingTarget:
        route = self._endpoint.route
        return route.pinned(version) if version else max(route.primaries, key=_weight)


def _weight(target: ServingTarget) -> float:
    return target.weight


def _counter(target: ServingTarget, started: float) -> Callable[[str], None]:
    def count(code: str) -> None:
        metrics.ENDPOINT_REQUESTS.labels(*target.labels, code).inc()
        if code not in CLIENT_CODES:
            target.stats.record(time.perf_counter() - started, code == "OK")

    return count
