"""Searches through a real gateway: the digits CNN and its datasets, search requests of
cheap techniques, and the brute-force check of a search's frontier."""

from __future__ import annotations

import numpy as np

from pareto.v1 import jobs_pb2
from pareto_cli.client import ParetoClient
from service.search.frontier import dominates
from service.search.result import MIN_GAIN
from tests.helpers.jobs import get_job, upload_dataset, watch

CHEAP = ["quantize.dynamic", "quantize.static", "low_rank.svd", "cluster.kmeans"]


def upload_digits(client: ParetoClient, digits_model) -> int:
    """The digits CNN as "digits" with labeled evaluation and calibration sets; its size."""
    client.upload(digits_model.path, "digits")
    x = digits_model.X_test.astype(np.float32)
    upload_dataset(client, "digits-eval", pixels=x, labels=digits_model.y_test)
    upload_dataset(client, "digits-calib", pixels=x[:128])
    return digits_model.path.stat().st_size


def search_request(**spec: object) -> jobs_pb2.CreateJobRequest:
    fields: dict = {"n_trials": 5, "techniques": CHEAP, "seed": 0} | spec
    constraints = fields.pop("constraints", {})
    request = jobs_pb2.CreateJobRequest(
        model="digits",
        datasets={"evaluation": "digits-eval", "calibration": "digits-calib"},
        evaluation=jobs_pb2.EvaluationSettings(batch_sizes=[1], iterations=3),
        search=jobs_pb2.SearchSpec(**fields),
    )
    for key, value in constraints.items():
        setattr(request.search.constraints, key, value)
    return request


def run_search(client: ParetoClient, request: jobs_pb2.CreateJobRequest) -> jobs_pb2.Job:
    job = client.jobs.CreateJob(request)
    watch(client, job.id)
    return get_job(client, job.id)


def get_search(client: ParetoClient, **request: str) -> jobs_pb2.SearchResult:
    return client.jobs.GetSearch(jobs_pb2.GetSearchRequest(**request))


def counted(result: jobs_pb2.SearchResult, job_id: str) -> list[jobs_pb2.SearchTrial]:
    """The job's trials that count against its budget: not repeats of a measured recipe,
    not skipped, not cut short by a stop."""
    return [
        t
        for t in result.trials
        if t.job_id == job_id
        and not t.standing.startswith("same recipe")
        and not t.message.startswith(("skipped", "interrupted"))
    ]


def point(trial: jobs_pb2.SearchTrial, objectives: list[str]) -> tuple[float, ...]:
    return (-trial.objectives["quality"], *(trial.objectives[o] for o in objectives))


def check_frontier(result: jobs_pb2.SearchResult) -> None:
    """Brute force: the frontier is exactly the feasible, complete, first-of-their-recipe
    trials that nothing (no such trial, not the parent) dominates and that beat the parent
    by MIN_GAIN somewhere."""
    objectives = list(result.spec.objectives)
    candidates = [
        t
        for t in result.trials
        if t.state == jobs_pb2.TRIAL_STATE_COMPLETE
        and t.feasible
        and not t.standing.startswith("same recipe")
    ]
    parent = (-result.parent.quality, *([1.0] * len(objectives)))
    expected = set()
    for t in candidates:
        p = point(t, objectives)
        beaten = any(dominates(point(o, objectives), p) for o in candidates if o is not t)
        gains = any(x < 1.0 - MIN_GAIN for x in p[1:])
        if not beaten and not dominates(parent, p) and gains:
            expected.add(t.number)
    assert set(result.frontier) == expected
    assert {t.number for t in result.trials if t.frontier} == expected
