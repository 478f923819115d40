"""A target ready to serve: its spec, servable, session arguments, labels and counters."""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from runtimes import registry
from service import metrics
from service.deployments.stats import TargetStats
from service.serving.servables import Servable
from service.serving.sessions import session_key
from service.store.deployment_records import TargetSpec


@dataclass(frozen=True, eq=False)
class ServingTarget:
    endpoint: str
    spec: TargetSpec
    servable: Servable
    runtime_name: str  # session argument: "" = the format's default runtime
    options: dict[str, Any] | None  # session argument: None = the server's options
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
    def labels(self) -> tuple[str, str, str, str]:
        """(model = endpoint, variant, runtime, role) metric labels."""
        return (self.endpoint, self.servable.variant_label, self.runtime_label, self.spec.role)

    @property
    def session_args(self) -> tuple[Servable, str, dict[str, Any] | None]:
        return (self.servable, self.runtime_name, self.options)

    @property
    def session_key(self) -> tuple[str, ...]:
        return session_key(*self.session_args)

    @property
    def has_own_session(self) -> bool:
        """Whether it needs a session of its own (not the one plain requests share)."""
        return self.session_key != self.servable.key


def build_target(
    endpoint: str,
    spec: TargetSpec,
    servable: Servable,
    server_options: dict[str, Any],
    stats: TargetStats,
) -> ServingTarget:
    """Session arguments: the format's default runtime shares the server's options (plus
    the target's own); another runtime gets only the target's options."""
    default = registry.runtime_for_format(servable.format).name
    runtime = "" if spec.runtime in ("", default) else spec.runtime
    if runtime:
        options: dict[str, Any] | None = dict(spec.runtime_options)
    else:
        options = {**server_options, **spec.runtime_options} if spec.runtime_options else None
    return ServingTarget(endpoint, spec, servable, runtime, options, runtime or default, stats)


def publish_weight(target: ServingTarget) -> None:
    metrics.TRAFFIC_WEIGHT.labels(*target.labels).set(target.weight)


def forget_metrics(target: ServingTarget) -> None:
    """Remove the target's gauges (its counters stay: Prometheus counters never go back)."""
    for gauge in (metrics.TRAFFIC_WEIGHT, metrics.CANARY_STEP):
        with suppress(KeyError):
            gauge.remove(*target.labels)
