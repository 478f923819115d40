"""CreateJob for a search that resumes an earlier one: a new job, the same Optuna study.

The new job keeps everything of the search it continues (objectives, limits, techniques,
datasets, evaluation, model version) and only gets more trials, time, or another sampler
or seed. It is refused while another job of the same study is queued or running: one
study has one writer, which is what lets a worker fail the trials a killed worker left
RUNNING.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pareto_core.errors import FailedPrecondition, InvalidArgument
from service.jobs.create import JobRequest, new_job_id
from service.search import spec as checks
from service.store.interfaces import Repository
from service.store.records import JOB_QUEUED, JOB_RUNNING, JobRecord

# What a resumed search may change; everything else is the resumed search's.
RESUMABLE = ("n_trials", "timeout_s", "sampler", "seed", "resume_from", "parallelism")


def resumed_search(
    repo: Repository, request: JobRequest, raw: dict[str, Any]
) -> tuple[JobRecord, dict[str, Any]]:
    """A new job continuing the study of an earlier search with more trials."""
    from pareto_core import names

    earlier_id = names.job_id(str(raw["resume_from"]), "search.resume_from")
    earlier = repo.get_job(earlier_id)
    stored = repo.get_search(earlier_id)
    if stored is None:
        raise InvalidArgument(f"search.resume_from: job {earlier_id!r} is not a search")
    if request.model and request.model != earlier.model:
        raise InvalidArgument(
            f"search.resume_from: job {earlier_id!r} searched model {earlier.model!r}, "
            f"not {request.model!r}"
        )
    changed = sorted(k for k in raw if k not in RESUMABLE and raw[k])
    given = request.datasets or _has_values(request.quality_budget)
    if changed or given or _has_values(request.evaluation):
        raise InvalidArgument(
            f"search.resume_from: a resumed search keeps the objectives, constraints, "
            f"techniques, datasets and evaluation of {earlier_id!r}; only n_trials, "
            f"timeout_s, sampler, seed and parallelism may be given "
            f"(got {changed or 'datasets/budget'})"
        )
    _check_not_running(repo, earlier.model, stored.spec["study"])
    n_trials, timeout_s = checks.check_budget(raw.get("n_trials"), raw.get("timeout_s"))
    options = checks.check_options({**stored.spec, **{k: raw[k] for k in raw if raw[k]}})
    spec = {
        **stored.spec,
        **options,
        "n_trials": n_trials,
        "timeout_s": timeout_s,
        "resume_from": earlier_id,
    }
    job = JobRecord(
        id=new_job_id(),
        model=earlier.model,
        model_version=earlier.model_version,
        recipes=(),
        datasets=dict(earlier.datasets),
        quality_budget=dict(earlier.quality_budget),
        evaluation=dict(earlier.evaluation),
    )
    repo.get_model(job.model, job.model_version)  # NotFound if the version is gone
    return job, spec


def _has_values(fields: Mapping[str, Any]) -> bool:
    """Whether a request sets any of these fields (proto defaults: 0, "", [], False)."""
    return any(v not in (None, False, 0, "", [], ()) for v in fields.values())


def _check_not_running(repo: Repository, model: str, study: str) -> None:
    for job in repo.list_jobs(model):
        if job.state not in (JOB_QUEUED, JOB_RUNNING):
            continue
        other = repo.get_search(job.id)
        if other is not None and other.spec.get("study") == study:
            raise FailedPrecondition(
                f"search.resume_from: job {job.id} is still {job.state.lower()} on the same "
                "study; wait for it (or cancel it) before adding trials"
            )
