"""Searches whose trials fan out to a real Ray cluster (search.parallelism 2 on a local
head with 2 CPUs, tests/helpers/ray_cluster.py), the Optuna study in a real PostgreSQL
database, real techniques and measurements on the digits CNN.

The frontier of a parallel search is exactly the brute-force non-dominated set of its
trials, every trial ran as a Ray task, and a resumed search adds trials to the same study;
a Ray worker killed mid-trial is retried by Ray and the trial still completes; cancelling
a parallel search stops its trial tasks and its actor.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from pareto.v1 import jobs_pb2
from pareto_cli.client import ParetoClient
from service.jobs.spawn import scratch_path
from service.server import GatewayServer
from tests.helpers.gateway_settings import make_settings
from tests.helpers.jobs import get_job, wait_for, watch
from tests.helpers.ray_cluster import RayHead
from tests.helpers.search import (
    check_frontier,
    counted,
    get_search,
    run_search,
    search_request,
    upload_digits,
)

STATE = jobs_pb2.JobState
GiB = 1024**3


@pytest.fixture
def gateway(tmp_path: Path, postgres_url: str, ray_head: RayHead) -> Iterator[GatewayServer]:
    settings = make_settings(
        tmp_path / "data",
        measure_memory=False,
        database_url=postgres_url,
        ray_address=ray_head.address,
        job_memory_limit_bytes=2 * GiB,
        job_max_attempts=2,
        replica_id="replica-ray",
    )
    server = GatewayServer(settings)
    server.start()
    yield server
    server.stop(grace=1.0)


@pytest.fixture
def digits(client: ParetoClient, digits_model) -> int:
    return upload_digits(client, digits_model)


def ray_pids(trials: list[jobs_pb2.SearchTrial]) -> set[str]:
    """The Ray worker processes that ran these trials (their `worker`: "ray IP node N pid P")."""
    assert all(t.worker.startswith("ray 127.0.0.1 node ") for t in trials), [
        t.worker for t in trials
    ]
    return {t.worker.split(" pid ")[1].split()[0] for t in trials}


def test_a_parallel_search_on_ray_keeps_the_true_frontier_and_resumes(client, digits):
    limits = {"max_quality_drop": 0.01, "max_size_bytes": digits}
    request = search_request(n_trials=6, sampler="random", parallelism=2, constraints=limits)
    job = run_search(client, request)
    assert job.state == STATE.JOB_STATE_SUCCEEDED, job.reason
    assert job.search.parallelism == 2
    result = get_search(client, id=job.id)
    mine = counted(result, job.id)
    assert len(mine) == 6 and result.frontier
    check_frontier(result)
    assert len(ray_pids(mine)) == 2, "two trials at once run in two Ray workers"
    stored = {t.variant_id for t in result.trials if t.frontier}
    assert stored == set(job.variant_ids) and "" not in stored

    more = jobs_pb2.SearchSpec(resume_from=job.id, n_trials=2, parallelism=2)
    resumed = run_search(client, jobs_pb2.CreateJobRequest(search=more))
    assert resumed.state == STATE.JOB_STATE_SUCCEEDED, resumed.reason
    after = get_search(client, id=resumed.id)
    assert after.study_name == result.study_name
    assert len(counted(after, resumed.id)) == 2
    assert {t.number for t in result.trials} < {t.number for t in after.trials}
    assert sorted(t.number for t in after.trials) == list(range(len(after.trials)))
    check_frontier(after)


def slow_trials(**spec: object) -> jobs_pb2.CreateJobRequest:
    """Trials long enough (timed runs at batch 64) to be caught running."""
    request = search_request(**spec)
    request.evaluation.CopyFrom(jobs_pb2.EvaluationSettings(batch_sizes=[64], iterations=300))
    return request


def started_runs(gateway: GatewayServer, job_id: str) -> list[str]:
    """The trial runs begun in the job's first run (markers in its scratch, see count_run)."""
    runs = scratch_path(gateway.settings.data_dir, job_id, 1) / "runs"
    return sorted(p.name for p in runs.iterdir()) if runs.is_dir() else []


def test_a_ray_worker_killed_mid_trial_is_retried(client, digits, gateway, ray_head):
    job = client.jobs.CreateJob(slow_trials(n_trials=4, parallelism=2, sampler="random"))

    def both_started() -> list[int]:
        pids = ray_head.worker_pids("run_trial_task")
        return pids if len(pids) == 2 and len(started_runs(gateway, job.id)) >= 2 else []

    pids = wait_for(both_started, "two trials running in Ray tasks", 180)
    os.kill(pids[0], signal.SIGKILL)
    watch(client, job.id)
    done = get_job(client, job.id)
    result = get_search(client, id=job.id)
    mine = counted(result, job.id)
    assert len(mine) == 4, [(t.number, t.message) for t in result.trials]
    assert not [t for t in result.trials if "died" in t.message]
    retried = [t for t in mine if t.worker.endswith(" run 2")]
    assert len(retried) == 1, [t.worker for t in mine]
    assert done.state == STATE.JOB_STATE_SUCCEEDED or "no trial" in done.reason, done.reason
    check_frontier(result)


def test_cancelling_a_parallel_search_stops_its_ray_tasks(client, digits, ray_head):
    job = client.jobs.CreateJob(slow_trials(n_trials=20, parallelism=2))
    wait_for(lambda: len(ray_head.worker_pids("run_trial_task")) == 2, "two running trials", 180)
    client.jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id))
    assert watch(client, job.id)[-1].state == STATE.JOB_STATE_CANCELLED
    wait_for(lambda: not ray_head.worker_pids("run_trial_task"), "the trial tasks to stop", 60)
    wait_for(lambda: not ray_head.worker_pids("JobActor"), "the search's actor to end", 60)
