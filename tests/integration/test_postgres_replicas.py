"""Replicas in processes of their own on one real PostgreSQL database: every job is claimed
exactly once however many claim at once, and a killed replica's job is re-queued after
its lease, claimed again, and its old owner's heartbeat finds it lost (fencing)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.store.postgres_repository import PostgresRepository
from service.store.records import JOB_QUEUED, JOB_RUNNING, JobRecord, RecipeSpec
from tests.helpers.store_backends import create_job

ROOT = Path(__file__).resolve().parents[2]
RECIPE = RecipeSpec("copy", ({"technique": "test.scale", "config": {"factor": 1.0}},))
LEASE_S = 1.0


def job(job_id: str) -> JobRecord:
    return JobRecord(job_id, "m", 1, (RECIPE,), {}, {}, {"batch_sizes": [1]})


def child(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.replica_child", *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def repo(postgres_url: str) -> Iterator[PostgresRepository]:
    r = PostgresRepository(postgres_url)
    yield r
    r.close()


def test_replicas_in_several_processes_claim_every_job_exactly_once(repo, postgres_url):
    jobs = [f"job-{i:03d}" for i in range(150)]
    for job_id in jobs:
        create_job(repo, job(job_id))
    replicas = [child("claim", postgres_url, f"replica-{k}", "2") for k in range(4)]
    try:
        for p in replicas:
            assert p.stdout.readline().strip() == "ready"
        for p in replicas:  # all 8 claimers start at once
            p.stdin.write("go\n")
            p.stdin.flush()
        claimed = [json.loads(p.communicate(timeout=120)[0]) for p in replicas]
    finally:
        for p in replicas:
            p.kill()
    everything = [job_id for ids in claimed for job_id in ids]
    assert sorted(everything) == jobs  # each exactly once
    assert sum(1 for ids in claimed if ids) >= 2, "no contention: one replica took all"
    stored = {j.id: j for j in repo.list_jobs()}
    for k, ids in enumerate(claimed):
        for job_id in ids:
            assert (stored[job_id].owner, stored[job_id].attempts) == (f"replica-{k}", 1)
    assert repo.count_jobs_by_state() == {JOB_RUNNING: len(jobs)}


def test_a_killed_replicas_job_is_picked_up_after_its_lease(repo, postgres_url):
    create_job(repo, job("job-1"))
    holder = child("hold", postgres_url, "replica-a", str(LEASE_S))
    try:
        assert holder.stdout.readline().strip() == "job-1"
        # While replica a lives and renews, neither a sweep nor b's start takes its job.
        time.sleep(LEASE_S * 1.5)
        assert repo.requeue_expired_jobs(max_attempts=3, lease_s=LEASE_S) == []
        starting_b = PostgresRepository(postgres_url)
        assert starting_b.recover_interrupted_jobs(3, "replica-b", LEASE_S) == []
        starting_b.close()
        assert (repo.get_job("job-1").state, repo.get_job("job-1").owner) == (
            JOB_RUNNING,
            "replica-a",
        )
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    deadline = time.monotonic() + 10 * LEASE_S
    requeued: list[JobRecord] = []
    while not requeued and time.monotonic() < deadline:
        time.sleep(LEASE_S / 4)
        requeued = repo.requeue_expired_jobs(max_attempts=3, lease_s=LEASE_S)
    assert [(j.id, j.state, j.owner) for j in requeued] == [("job-1", JOB_QUEUED, "replica-a")]
    again = repo.claim_next_job("replica-b")
    assert (again.id, again.owner, again.attempts) == ("job-1", "replica-b", 2)
    assert repo.heartbeat_jobs("replica-a", ["job-1"]) == set()  # a's next heartbeat: lost
    assert repo.heartbeat_jobs("replica-b", ["job-1"]) == {"job-1"}
