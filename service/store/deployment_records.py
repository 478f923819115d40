"""Deployment records: what the repository stores and the manager serves from.

Plain frozen dataclasses that round-trip through JSON (`to_data` / `from_data`); their
wire schema is `pareto.v1.Deployment` (proto/pareto/v1/deployments.proto).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

ROLE_PRIMARY = "primary"
ROLE_SHADOW = "shadow"
ROLES = (ROLE_PRIMARY, ROLE_SHADOW)

CANARY_RUNNING = "RUNNING"
CANARY_PROMOTED = "PROMOTED"
CANARY_ROLLED_BACK = "ROLLED_BACK"
CANARY_CANCELLED = "CANCELLED"
AGREEMENT_MEASURES = ("cosine", "top1")


@dataclass(frozen=True)
class TargetSpec:
    """One target of an endpoint: a model version or variant on a runtime."""

    name: str
    model_version: str  # "3" or "var-..." (never "": resolved at creation)
    runtime: str = ""  # "" = the default runtime for the format
    runtime_options: dict[str, Any] = field(default_factory=dict)
    weight: float = 0.0  # percent (primaries)
    role: str = ROLE_PRIMARY
    sample_rate: float = 1.0  # shadows: fraction of answered requests copied

    @property
    def is_shadow(self) -> bool:
        return self.role == ROLE_SHADOW


@dataclass(frozen=True)
class CanaryPlan:
    canary: str  # target name
    steps: tuple[float, ...]
    min_requests: int = 100
    dwell_seconds: float = 60.0
    max_p99_latency_ratio: float = 0.0
    max_error_rate_increase: float = 0.0
    min_agreement: float = 0.0
    agreement_measure: str = ""


@dataclass(frozen=True)
class CanaryStatus:
    state: str
    step: int  # 1-based; 0 after a rollback
    reason: str = ""
    updated_at: datetime | None = None


@dataclass(frozen=True)
class DeploymentRecord:
    name: str  # the endpoint
    model: str
    targets: tuple[TargetSpec, ...]
    canary: CanaryPlan | None = None
    canary_status: CanaryStatus | None = None
    revision: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def target(self, name: str) -> TargetSpec | None:
        return next((t for t in self.targets if t.name == name), None)

    @property
    def primaries(self) -> tuple[TargetSpec, ...]:
        return tuple(t for t in self.targets if not t.is_shadow)

    def with_weights(self, weights: dict[str, float]) -> DeploymentRecord:
        targets = tuple(
            replace(t, weight=weights[t.name]) if t.name in weights else t for t in self.targets
        )
        return replace(self, targets=targets)

    @property
    def canary_running(self) -> bool:
        status = self.canary_status
        return self.canary is not None and status is not None and status.state == CANARY_RUNNING


def spec_to_data(record: DeploymentRecord) -> dict[str, Any]:
    """Targets and canary as JSON-able data (times are stored in their own columns)."""
    status = record.canary_status
    return {
        "targets": [asdict(t) for t in record.targets],
        "canary": asdict(record.canary) if record.canary else None,
        "canary_status": (
            {
                "state": status.state,
                "step": status.step,
                "reason": status.reason,
                "updated_at": status.updated_at.isoformat() if status.updated_at else None,
            }
            if status
            else None
        ),
    }


def spec_from_data(data: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of DeploymentRecord that `spec_to_data` stored."""
    canary = data.get("canary")
    status = data.get("canary_status")
    return {
        "targets": tuple(TargetSpec(**t) for t in data["targets"]),
        "canary": CanaryPlan(**{**canary, "steps": tuple(canary["steps"])}) if canary else None,
        "canary_status": (
            CanaryStatus(
                status["state"],
                status["step"],
                status["reason"],
                datetime.fromisoformat(status["updated_at"]) if status["updated_at"] else None,
            )
            if status
            else None
        ),
    }


def deployments_using(records: list[DeploymentRecord], model: str, version: str = "") -> list[str]:
    """Names of the deployments with a target on `model` (on its `version` only, when given:
    "3" or "var-...")."""
    return [
        r.name
        for r in records
        if r.model == model and any(version in ("", t.model_version) for t in r.targets)
    ]
