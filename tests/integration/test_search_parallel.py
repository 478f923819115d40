"""Parallel searches without Ray: search.parallelism 2 runs the trials in two trial processes
beside the search's worker (the embedded SQLite store, real techniques on the digits CNN).

The frontier is exactly the brute-force non-dominated set of the trials, which ran in two
processes; resuming with parallelism 1 runs the new trials in the worker itself; a trial
process that dies fails the trials it was running, with the reason, and the search goes on.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from pareto.v1 import jobs_pb2
from pareto_cli.client import ParetoClient
from service.server import GatewayServer
from tests.helpers.gateway_settings import make_settings
from tests.helpers.jobs import get_job, wait_for, watch
from tests.helpers.search import (
    check_frontier,
    counted,
    get_search,
    run_search,
    search_request,
    upload_digits,
)

STATE = jobs_pb2.JobState


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayServer]:
    server = GatewayServer(make_settings(tmp_path / "data", measure_memory=False))
    server.start()
    yield server
    server.stop(grace=1.0)


@pytest.fixture
def digits(client: ParetoClient, digits_model) -> int:
    return upload_digits(client, digits_model)


def test_a_parallel_search_runs_trials_in_processes_and_keeps_the_true_frontier(client, digits):
    job = run_search(client, search_request(n_trials=6, parallelism=2, sampler="random"))
    assert job.state == STATE.JOB_STATE_SUCCEEDED, job.reason
    result = get_search(client, id=job.id)
    mine = counted(result, job.id)
    assert len(mine) == 6
    check_frontier(result)
    assert {t.worker.split()[0] for t in mine} == {"process"}
    assert len({t.worker for t in mine}) == 2, "two trials at once, in two processes"

    more = jobs_pb2.SearchSpec(resume_from=job.id, n_trials=2, parallelism=1)
    resumed = run_search(client, jobs_pb2.CreateJobRequest(search=more))
    after = get_search(client, id=resumed.id)
    assert [t.worker for t in counted(after, resumed.id)] == ["search worker"] * 2
    check_frontier(after)


def trial_processes(job_id: str) -> list[int]:
    """The job's trial processes: children of its worker that multiprocessing spawned
    (`spawn_main`; not its resource tracker)."""
    workers = [pid for pid, args in _commands() if "service.worker" in args and job_id in args]
    return [pid for pid, args in _commands() if "spawn_main" in args and _parent(pid) in workers]


def _commands() -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((int(entry.name), (entry / "cmdline").read_bytes().decode()))
            except OSError:
                continue
    return found


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1


def test_a_dead_trial_process_fails_its_trials_and_the_search_goes_on(client, digits, gateway):
    request = search_request(n_trials=4, parallelism=2, sampler="random")
    request.evaluation.CopyFrom(jobs_pb2.EvaluationSettings(batch_sizes=[64], iterations=300))
    job = client.jobs.CreateJob(request)

    def a_trial_runs() -> bool:
        started = [e for e in gateway.repo.list_events(job.id) if e.step.startswith("trial ")]
        return bool(started and trial_processes(job.id))

    wait_for(a_trial_runs, "a trial in a trial process", 120)
    os.kill(trial_processes(job.id)[0], signal.SIGKILL)
    watch(client, job.id)
    result = get_search(client, id=job.id)
    died = [t for t in result.trials if "its process died" in t.message]
    assert died and all(t.state == jobs_pb2.TRIAL_STATE_FAILED for t in died)
    assert len(counted(result, job.id)) == 4  # failed trials count, the others ran
    done = get_job(client, job.id)
    assert done.state == STATE.JOB_STATE_SUCCEEDED or "no trial" in done.reason, done.reason
