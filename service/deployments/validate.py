"""Checks of a deployment before anything changes; every message names the bad field.

INVALID_ARGUMENT for what the request says wrong (weights not summing to 100, a variant
that does not exist or belongs to another model, an unknown runtime), FAILED_PRECONDITION
for what the stored state forbids (incompatible signatures, an unavailable runtime, an
endpoint name taken by another model).
"""

from __future__ import annotations

import math
from dataclasses import replace

from pareto_core import names
from pareto_core.errors import FailedPrecondition, InvalidArgument, NotFound, ParetoError
from service.deployments.signatures import signature_mismatch
from service.serving.servables import (
    VARIANT_ID,
    VARIANT_SERVING_NAME,
    Servable,
    from_model,
    from_variant,
)
from service.serving.sessions import named_runtime
from service.store.deployment_records import (
    AGREEMENT_MEASURES,
    ROLES,
    CanaryPlan,
    DeploymentRecord,
    TargetSpec,
)
from service.store.interfaces import Repository

TOLERANCE = 1e-6


def check_endpoint(repo: Repository, name: str, model: str) -> None:
    names.check(names.MODEL_NAME, name, "name")
    names.check(names.MODEL_NAME, model, "model")
    if VARIANT_SERVING_NAME.match(name):
        raise InvalidArgument(f"name {name!r} is a variant's own serving name; pick another")
    repo.get_model(model)  # NotFound names the model
    if name != model and repo.name_exists(name):
        raise FailedPrecondition(
            f"endpoint name {name!r} is the name of another uploaded model; a deployment of "
            f"model {model!r} may use {model!r} or a name no model has"
        )


def resolve_target(repo: Repository, model: str, version: str, field: str) -> Servable:
    """The servable `version` designates among `model`'s versions and variants."""
    try:
        if VARIANT_ID.match(version):
            variant = repo.get_variant(version)
            if variant.parent_model != model:
                raise InvalidArgument(
                    f"{field}: variant {version!r} belongs to model {variant.parent_model!r}, "
                    f"not to {model!r}"
                )
            return from_variant(variant)
        if version and not version.isdigit():
            raise InvalidArgument(
                f"{field} must be empty (latest), a version number or a variant id "
                f"(var-...), got {names.shown(version)}"
            )
        return from_model(repo.get_model(model, int(version or 0)))
    except NotFound as exc:
        raise InvalidArgument(f"{field}: {exc}") from None


def check_targets(
    repo: Repository, model: str, targets: list[TargetSpec], planned: bool
) -> tuple[tuple[TargetSpec, ...], list[Servable]]:
    """Targets with defaults filled in (resolved version, name, role, sample rate) and
    their servables. `planned`: a canary plan will set the primaries' weights."""
    if not targets:
        raise InvalidArgument("targets: a deployment needs at least one target")
    done: list[TargetSpec] = []
    servables: list[Servable] = []
    for i, spec in enumerate(targets):
        field = f"targets[{i}]"
        if spec.role not in ROLES:
            raise InvalidArgument(f"{field}.role must be one of {list(ROLES)}, got {spec.role!r}")
        servable = resolve_target(repo, model, spec.model_version, f"{field}.model_version")
        spec = replace(spec, model_version=servable.version)
        spec = replace(spec, name=_name(spec, done, field))
        _check_numbers(spec, field)
        if spec.is_shadow:
            spec = replace(spec, sample_rate=spec.sample_rate or 1.0)
        _check_runtime(spec, servable, field)
        done.append(spec)
        servables.append(servable)
    _check_weights(done, planned)
    _check_signatures(done, servables)
    return tuple(done), servables


def _name(spec: TargetSpec, done: list[TargetSpec], field: str) -> str:
    taken = {t.name for t in done}
    if spec.name:
        names.check(names.MODEL_NAME, spec.name, f"{field}.name")
        if spec.name in taken:
            raise InvalidArgument(f"{field}.name {spec.name!r} is used by another target")
        return spec.name
    name = spec.model_version
    if name in taken:
        name = f"{name}-{spec.role}"
    if name in taken:
        raise InvalidArgument(f"{field}.name: give the target a name ({name!r} is taken)")
    return name


def _check_numbers(spec: TargetSpec, field: str) -> None:
    if not math.isfinite(spec.weight) or spec.weight < 0 or spec.weight > 100:
        raise InvalidArgument(f"{field}.weight must be a percent in [0, 100], got {spec.weight}")
    if spec.is_shadow and spec.weight:
        raise InvalidArgument(
            f"{field}.weight must be 0 for a shadow (it answers no request), got {spec.weight}"
        )
    if not 0 <= spec.sample_rate <= 1:
        raise InvalidArgument(f"{field}.sample_rate must be in [0, 1], got {spec.sample_rate}")


def _check_runtime(spec: TargetSpec, servable: Servable, field: str) -> None:
    try:
        named_runtime(spec.runtime, servable.format)
    except ParetoError as exc:
        raise type(exc)(f"{field}.runtime: {exc}") from None


def check_weights_sum(weights: dict[str, float]) -> None:
    total = sum(weights.values())
    if abs(total - 100.0) > TOLERANCE:
        shown = ", ".join(f"{k}={v:g}" for k, v in weights.items())
        raise InvalidArgument(
            f"weights of the primary targets must sum to 100, got {total:g} ({shown})"
        )


def check_weights(record: DeploymentRecord, weights: dict[str, float]) -> dict[str, float]:
    """`weights` for UpdateTraffic: one per primary target, each a percent, summing to 100."""
    primaries = [t.name for t in record.primaries]
    unknown = [k for k in weights if k not in primaries]
    if unknown:
        raise InvalidArgument(
            f"weights: {unknown} are not primary targets of {record.name!r} (primaries: "
            f"{primaries})"
        )
    missing = [k for k in primaries if k not in weights]
    if missing:
        raise InvalidArgument(f"weights: give a weight for every primary target; missing {missing}")
    for key, value in weights.items():
        if not 0 <= value <= 100:
            raise InvalidArgument(f"weights[{key!r}] must be a percent in [0, 100], got {value}")
    check_weights_sum(weights)
    return weights


def _check_weights(targets: list[TargetSpec], planned: bool) -> None:
    primaries = {t.name: t.weight for t in targets if not t.is_shadow}
    if not primaries:
        raise InvalidArgument("targets: a deployment needs at least one primary target")
    if planned and not any(primaries.values()):
        return  # the canary plan sets them
    check_weights_sum(primaries)


def _check_signatures(targets: list[TargetSpec], servables: list[Servable]) -> None:
    """Every target must accept the baseline's inputs and give its outputs."""
    base_spec, base = next((t, s) for t, s in zip(targets, servables, strict=True))
    for spec, servable in zip(targets, servables, strict=True):
        problem = signature_mismatch(base.signature, servable.signature)
        if problem:
            raise FailedPrecondition(
                f"target {spec.name!r} ({servable.version}) is not compatible with "
                f"{base_spec.name!r} ({base.version}): {problem}"
            )


def check_canary(record: DeploymentRecord) -> DeploymentRecord:
    """The record with the plan's canary named by target name and the primaries' weights
    set to the first step; InvalidArgument when the plan does not fit the deployment."""
    plan = record.canary
    if plan is None:
        return record
    primaries = record.primaries
    if len(primaries) != 2:
        raise InvalidArgument(
            f"canary: a canary plan needs exactly two primary targets (the baseline and the "
            f"canary), got {len(primaries)}"
        )
    canary = next((t for t in primaries if plan.canary in (t.name, t.model_version)), None)
    if canary is None:
        raise InvalidArgument(
            f"canary.canary {plan.canary!r} is not a primary target; primaries: "
            f"{[t.name for t in primaries]}"
        )
    _check_plan(plan)
    baseline = next(t for t in primaries if t is not canary)
    first = plan.steps[0]
    given = {canary.name: canary.weight, baseline.name: baseline.weight}
    wanted = {canary.name: first, baseline.name: 100.0 - first}
    if any(given.values()) and any(abs(given[k] - wanted[k]) > TOLERANCE for k in given):
        raise InvalidArgument(
            f"canary: the plan starts {canary.name!r} at {first:g}%, but the weights say "
            f"{given}; leave the primaries' weights 0 or set them to {wanted}"
        )
    plan = replace(plan, canary=canary.name, min_requests=plan.min_requests or 100)
    return replace(record.with_weights(wanted), canary=plan)


def _check_plan(plan: CanaryPlan) -> None:
    steps = plan.steps
    if not steps:
        raise InvalidArgument("canary.steps: give at least one step (canary percent)")
    if any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
        raise InvalidArgument(
            f"canary.steps must be increasing percents in (0, 100], got {list(steps)}"
        )
    for field in ("min_requests", "dwell_seconds", "max_p99_latency_ratio"):
        value = getattr(plan, field)
        if not math.isfinite(value) or value < 0:
            raise InvalidArgument(f"canary.{field} must be >= 0, got {value}")
    if not 0 <= plan.max_error_rate_increase <= 1:
        raise InvalidArgument(
            f"canary.max_error_rate_increase must be in [0, 1], got {plan.max_error_rate_increase}"
        )
    if not 0 <= plan.min_agreement <= 1:
        raise InvalidArgument(f"canary.min_agreement must be in [0, 1], got {plan.min_agreement}")
    if plan.min_agreement and plan.agreement_measure not in AGREEMENT_MEASURES:
        raise InvalidArgument(
            f"canary.agreement_measure must be one of {list(AGREEMENT_MEASURES)} when "
            f"min_agreement is set, got {plan.agreement_measure!r}"
        )
