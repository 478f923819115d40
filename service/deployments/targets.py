"""A target ready to serve: its spec, servable, session arguments, labels and counters."""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass

from service import metrics
from service.deployments.stats import TargetStats
from service.serving.servables import Servable
from service.serving.targets import Target, deployment_target
from service.store.deployment_records import TargetSpec


@dataclass(frozen=True, eq=False)
class ServingTarget:
    endpoint: str
    spec: TargetSpec
    target: Target  # what it runs on
    runtime_label: str  # the runtime really used, for metric labels
    stats: TargetStats

    # -- service.deployments.router.Routable
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> str:
        return self.spec.model_version

    @property
    def weight(self) -> float:
        return self.spec.weight

    @property
    def is_shadow(self) -> bool:
        return self.spec.is_shadow

    @property
    def servable(self) -> Servable:
        return self.target.servable

    @property
    def labels(self) -> tuple[str, str, str, str]:
        """(model = endpoint, variant, runtime, role) metric labels."""
        return (self.endpoint, self.servable.variant_label, self.runtime_label, self.spec.role)

    @property
    def has_own_session(self) -> bool:
        """Whether it needs a session of its own (not the one plain requests share)."""
        return not self.target.is_plain


def build_target(
    endpoint: str, spec: TargetSpec, servable: Servable, stats: TargetStats
) -> ServingTarget:
    target = deployment_target(servable, spec.runtime, spec.runtime_options)
    return ServingTarget(endpoint, spec, target, target.runtime_label(), stats)


def publish_weight(target: ServingTarget) -> None:
    metrics.TRAFFIC_WEIGHT.labels(*target.labels).set(target.weight)


def forget_metrics(target: ServingTarget) -> None:
    """Remove the target's gauges (its counters stay: Prometheus counters never go back)."""
    for gauge in (metrics.TRAFFIC_WEIGHT, metrics.CANARY_STEP):
        with suppress(KeyError):
            gauge.remove(*target.labels)
