"""`pareto.v1.DeploymentService` (thin adapter): proto <-> deployment records."""

from __future__ import annotations

import math
from typing import Any

from google.protobuf import struct_pb2
from google.protobuf.json_format import MessageToDict, ParseDict

from pareto.v1 import deployments_pb2 as pb
from pareto.v1 import deployments_pb2_grpc as pb_grpc
from pareto_core.errors import InvalidArgument
from service.deployments.manager import DeploymentManager
from service.deployments.report import build_report
from service.store.deployment_records import (
    ROLE_PRIMARY,
    ROLE_SHADOW,
    CanaryPlan,
    CanaryStatus,
    DeploymentRecord,
    TargetSpec,
)

_ROLES = {
    pb.ROLE_UNSPECIFIED: ROLE_PRIMARY,
    pb.ROLE_PRIMARY: ROLE_PRIMARY,
    pb.ROLE_SHADOW: ROLE_SHADOW,
}
_ROLE_ENUM = {ROLE_PRIMARY: pb.ROLE_PRIMARY, ROLE_SHADOW: pb.ROLE_SHADOW}


class DeploymentServicer(pb_grpc.DeploymentServiceServicer):
    def __init__(self, manager: DeploymentManager) -> None:
        self._manager = manager

    def CreateDeployment(self, request: pb.CreateDeploymentRequest, context) -> pb.Deployment:
        targets = [target_from_proto(t, f"targets[{i}]") for i, t in enumerate(request.targets)]
        canary = plan_from_proto(request.canary) if request.HasField("canary") else None
        return deployment_to_proto(
            self._manager.create(request.name, request.model, targets, canary, context.is_active)
        )

    def UpdateTraffic(self, request: pb.UpdateTrafficRequest, context) -> pb.Deployment:
        canary = plan_from_proto(request.canary) if request.HasField("canary") else None
        weights = dict(request.weights)
        if any(not math.isfinite(w) for w in weights.values()):
            raise InvalidArgument(f"weights must be finite numbers, got {weights}")
        record = self._manager.update_traffic(_name(request.name), weights, canary)
        return deployment_to_proto(record)

    def GetDeployment(self, request: pb.GetDeploymentRequest, context) -> pb.Deployment:
        return deployment_to_proto(self._manager.get(_name(request.name)))

    def ListDeployments(self, request, context) -> pb.ListDeploymentsResponse:
        records = self._manager.list()
        return pb.ListDeploymentsResponse(deployments=[deployment_to_proto(r) for r in records])

    def DeleteDeployment(self, request: pb.DeleteDeploymentRequest, context) -> pb.Deployment:
        return deployment_to_proto(self._manager.delete(_name(request.name)))

    def GetDeploymentReport(self, request, context) -> pb.DeploymentReport:
        name = _name(request.name)
        self._manager.get(name)  # NotFound for unknown names
        endpoint = next((e for e in self._manager.endpoints() if e.record.name == name), None)
        if endpoint is None:
            return pb.DeploymentReport(name=name)
        report = ParseDict(build_report(endpoint), pb.DeploymentReport())
        if endpoint.record.canary_status is not None:
            report.canary_status.CopyFrom(status_to_proto(endpoint.record.canary_status))
        return report


def _name(name: str) -> str:
    if not name:
        raise InvalidArgument("name is required (the deployment's endpoint name)")
    return name


def target_from_proto(t: pb.Target, field: str) -> TargetSpec:
    if t.role not in _ROLES:
        raise InvalidArgument(f"{field}.role: unknown role {t.role}")
    for number in ("weight", "sample_rate"):
        if not math.isfinite(getattr(t, number)):
            raise InvalidArgument(f"{field}.{number} must be a finite number")
    return TargetSpec(
        name=t.name,
        model_version=t.model_version,
        runtime=t.runtime,
        runtime_options=_ints(MessageToDict(t.runtime_options)),
        weight=t.weight,
        role=_ROLES[t.role],
        sample_rate=t.sample_rate,
    )


def plan_from_proto(plan: pb.CanaryPlan) -> CanaryPlan:
    numbers = [*plan.steps, plan.dwell_seconds, plan.max_p99_latency_ratio]
    numbers += [plan.max_error_rate_increase, plan.min_agreement]
    if any(not math.isfinite(x) for x in numbers):
        raise InvalidArgument("canary: every number must be finite")
    return CanaryPlan(
        canary=plan.canary,
        steps=tuple(plan.steps),
        min_requests=plan.min_requests,
        dwell_seconds=plan.dwell_seconds,
        max_p99_latency_ratio=plan.max_p99_latency_ratio,
        max_error_rate_increase=plan.max_error_rate_increase,
        min_agreement=plan.min_agreement,
        agreement_measure=plan.agreement_measure,
    )


def status_to_proto(status: CanaryStatus) -> pb.CanaryStatus:
    message = pb.CanaryStatus(
        state=pb.CanaryState.Value(f"CANARY_STATE_{status.state}"),
        step=status.step,
        reason=status.reason,
    )
    if status.updated_at:
        message.updated_at.FromDatetime(status.updated_at)
    return message


def deployment_to_proto(record: DeploymentRecord) -> pb.Deployment:
    message = pb.Deployment(name=record.name, model=record.model, revision=record.revision)
    for t in record.targets:
        options = struct_pb2.Struct()
        options.update(dict(t.runtime_options))
        message.targets.add(
            name=t.name,
            model_version=t.model_version,
            runtime=t.runtime,
            runtime_options=options,
            weight=t.weight,
            role=_ROLE_ENUM[t.role],
            sample_rate=t.sample_rate if t.is_shadow else 0.0,
        )
    if record.canary is not None:
        plan = record.canary
        message.canary.CopyFrom(
            pb.CanaryPlan(
                canary=plan.canary,
                steps=list(plan.steps),
                min_requests=plan.min_requests,
                dwell_seconds=plan.dwell_seconds,
                max_p99_latency_ratio=plan.max_p99_latency_ratio,
                max_error_rate_increase=plan.max_error_rate_increase,
                min_agreement=plan.min_agreement,
                agreement_measure=plan.agreement_measure,
            )
        )
    if record.canary_status is not None:
        message.canary_status.CopyFrom(status_to_proto(record.canary_status))
    for field in ("created_at", "updated_at"):
        value = getattr(record, field)
        if value is not None:
            getattr(message, field).FromDatetime(value)
    return message


def _ints(value: Any) -> Any:
    """google.protobuf.Struct keeps numbers as doubles: 2.0 -> 2, so int options validate."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    return value
