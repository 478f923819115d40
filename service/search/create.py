"""CreateJob for a search: the request checked into a QUEUED JobRecord and its stored spec.

A search is a job without recipes: the worker explores them (`service.search.run`). What
is checked here, before anything is stored: the spec's own fields (`spec.py`), that the
model is ONNX, its datasets, the batch size against the model's inputs, and which
techniques the search may explore with these datasets (each is also given the job's usual
`check_job`); a resumed search is checked in `resume.py`. The quality limit becomes the
job's quality budget: an accuracy drop when the evaluation data has labels and the model
outputs class scores, else a minimum mean cosine to the parent's outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from compressors import registry
from compressors.base import EVALUATION_ROLES, JobInfo
from pareto_core.errors import FailedPrecondition, InvalidArgument
from pareto_core.formats import FORMAT_ONNX, artifact_format
from service.jobs.create import (
    JobRequest,
    new_job_id,
    validate_datasets,
    validate_evaluation,
    validate_quality_budget,
)
from service.search import space
from service.search import spec as checks
from service.store.interfaces import Repository
from service.store.records import JobRecord, ModelRecord


def validate_search_job(repo: Repository, request: JobRequest) -> tuple[JobRecord, dict[str, Any]]:
    """(the QUEUED JobRecord, the normalized spec) or the first problem as a ParetoError."""
    raw = dict(request.search or {})
    checks.check_fields(raw)
    if request.recipes:
        raise InvalidArgument("give either recipes or search, not both")
    if raw.get("resume_from"):
        from service.search.resume import resumed_search

        return resumed_search(repo, request, raw)
    if not request.model:
        raise InvalidArgument("model is required")
    model = repo.get_model(request.model, max(0, request.model_version))
    job_id = new_job_id()
    spec, job = _fresh(repo, request, raw, model, job_id)
    spec["study"] = f"pareto:{model.name}:{job_id}"
    return job, spec


def _fresh(
    repo: Repository, request: JobRequest, raw: dict[str, Any], model: ModelRecord, job_id: str
) -> tuple[dict[str, Any], JobRecord]:
    fmt = artifact_format(model.format)
    if fmt != FORMAT_ONNX:
        raise FailedPrecondition(
            f"search explores techniques on ONNX models; model {model.name!r} version "
            f"{model.version} is {model.format!r}: upload its ONNX export to search it"
        )
    objectives = checks.check_objectives(raw.get("objectives") or ())
    constraints = checks.check_constraints(raw.get("constraints") or {})
    n_trials, timeout_s = checks.check_budget(raw.get("n_trials"), raw.get("timeout_s"))
    datasets = validate_datasets(repo, request.datasets, model)
    labels = {role: repo.get_dataset(name).has_labels for role, name in datasets.items()}
    evaluation = validate_evaluation(request.evaluation)
    batch = checks.check_batch_size(raw.get("batch_size"), evaluation["batch_sizes"])
    _check_batch_fits(model, batch)
    evaluation["batch_sizes"] = sorted({*evaluation["batch_sizes"], batch})
    budget = _quality_budget(request.quality_budget, constraints, model, labels)
    options = checks.check_options(raw)
    ctx = space.space_context(labels, options["seed"])
    techniques, skipped = _techniques(repo, raw.get("techniques") or (), model, datasets, ctx)
    spec = {
        "objectives": objectives,
        "batch_size": batch,
        "constraints": constraints,
        "n_trials": n_trials,
        "timeout_s": timeout_s,
        "techniques": techniques,
        "skipped": skipped,
        **options,
        "resume_from": "",
    }
    job = JobRecord(
        id=job_id,
        model=model.name,
        model_version=model.version,
        recipes=(),
        datasets=datasets,
        quality_budget=budget,
        evaluation=evaluation,
    )
    return spec, job


def _check_batch_fits(model: ModelRecord, batch: int) -> None:
    for tensor in model.signature.inputs:
        fixed = tensor.shape[0] if tensor.shape else -1
        if fixed > 0 and fixed != batch:
            raise InvalidArgument(
                f"search.batch_size {batch}: model input {tensor.name!r} has a fixed batch "
                f"dimension of {fixed}"
            )


def _quality_budget(
    given: Mapping[str, Any],
    constraints: dict[str, float | int],
    model: ModelRecord,
    labels: Mapping[str, bool],
) -> dict[str, Any]:
    budget = validate_quality_budget(given)
    if budget.get("keep_failing"):
        raise InvalidArgument(
            "quality_budget.keep_failing does not apply to a search: trials that break the "
            "budget are listed as infeasible, never stored"
        )
    limits = {k: v for k, v in budget.items() if v is not None and k != "keep_failing"}
    if limits and "max_quality_drop" in constraints:
        raise InvalidArgument(
            "give either search.constraints.max_quality_drop or quality_budget, not both"
        )
    if limits:
        return limits
    drop = float(constraints.setdefault("max_quality_drop", checks.DEFAULT_MAX_QUALITY_DROP))
    if _measures_accuracy(model, labels):
        return {"max_accuracy_drop": drop}
    return {"min_cosine": round(1.0 - drop, 12)}


def _measures_accuracy(model: ModelRecord, labels: Mapping[str, bool]) -> bool:
    """The evaluation data has labels and the first output looks like class scores."""
    role = next((r for r in EVALUATION_ROLES if r in labels), None)
    if role is None or not labels[role] or not model.signature.outputs:
        return False
    shape = model.signature.outputs[0].shape
    return len(shape) == 2 and shape[1] != 1


def _techniques(
    repo: Repository,
    requested: Any,
    model: ModelRecord,
    datasets: Mapping[str, str],
    ctx: space.SpaceContext,
) -> tuple[list[str], dict[str, str]]:
    """(explored techniques, {skipped default technique: why}). A requested technique that
    cannot run here is an error; a default one is skipped, with the reason kept."""
    from service.jobs.references import model_info

    names = list(requested)
    for i, name in enumerate(names):
        registry.get(str(name))  # InvalidArgument listing the registered techniques
        if name not in space.EXPLORABLE:
            raise InvalidArgument(
                f"search.techniques[{i}]: the search does not explore {name!r}; it explores "
                f"{', '.join(space.SEARCHABLE)} and, when named, {', '.join(space.OPT_IN)}"
            )
        if name in names[:i]:
            raise InvalidArgument(f"search.techniques[{i}]: {name!r} is listed twice")
    info = JobInfo(
        model=model_info(model),
        datasets={r: (n, repo.get_dataset(n).has_labels) for r, n in datasets.items()},
        find_model=lambda name: model_info(repo.get_model(name, 0)),
    )
    kept, skipped = [], {}
    for name in names or space.SEARCHABLE:
        why = _why_not(name, info, ctx)
        if why is None:
            kept.append(name)
        elif names:
            raise FailedPrecondition(f"search.techniques: {name} {why}")
        else:
            skipped[name] = why
    if not kept:
        reasons = "; ".join(f"{k} {v}" for k, v in skipped.items())
        raise FailedPrecondition(
            f"no technique the search explores applies to model {model.name!r} with these "
            f"datasets: {reasons}"
        )
    return kept, skipped


def _why_not(name: str, info: JobInfo, ctx: space.SpaceContext) -> str | None:
    technique = registry.get(name)
    if FORMAT_ONNX not in technique.input_formats:
        return f"takes {' or '.join(sorted(technique.input_formats))} models, not ONNX"
    if (missing := space.needs(name, ctx)) is not None:
        return missing
    config = registry.parse_config(name, space.typical_config(name, ctx))
    try:
        technique.check_job(config, info, f"search.techniques[{name}]")
    except (InvalidArgument, FailedPrecondition) as exc:
        return f"cannot run here: {exc}"
    return None


def create_search_job(
    repo: Repository,
    request: JobRequest,
    max_queued: int = 0,
    admit: Callable[[], None] = lambda: None,
) -> JobRecord:
    """Validate, `admit` (raises when no job could start now), then store the spec and the
    QUEUED job (the spec first: a worker that claims the job must find it). `max_queued`
    as for `create_job`."""
    job, spec = validate_search_job(repo, request)
    admit()
    repo.add_search(job.id, spec)
    try:
        return repo.create_job(job, max_queued)
    except BaseException:
        repo.remove_search(job.id)
        raise
