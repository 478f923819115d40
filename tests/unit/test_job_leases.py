"""Job claiming by replicas, leases, recovery and the queue bound, on both backends.

Each "replica" is its own repository on the same database (a process of its own would
behave the same: nothing is shared but the database). Leases are a fraction of a second
here so that expiry takes no time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pareto_core.errors import ResourceExhausted
from service.store.records import (
    JOB_FAILED,
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_SUCCEEDED,
    JobRecord,
    RecipeSpec,
)
from service.store.sql_codec import now
from tests.helpers.store_backends import BACKENDS, StoreBackend, create_job, store_backend

LEASE_S = 0.3
RECIPE = RecipeSpec("copy", ({"technique": "test.scale", "config": {"factor": 1.0}},))


def job(job_id: str) -> JobRecord:
    return JobRecord(job_id, "m", 1, (RECIPE,), {}, {}, {"batch_sizes": [1]})


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreBackend]:
    yield from store_backend(request, tmp_path)


def expire() -> None:
    time.sleep(LEASE_S * 1.5)


def test_a_claim_records_the_replica_and_its_lease(backend):
    a = backend.open()
    create_job(a, job("job-1"))
    before = now()
    claimed = a.claim_next_job("replica-a")
    assert (claimed.state, claimed.owner, claimed.attempts) == (JOB_RUNNING, "replica-a", 1)
    assert claimed.heartbeat_at is not None and claimed.started_at == claimed.heartbeat_at
    assert abs((claimed.heartbeat_at - before).total_seconds()) < 5
    assert a.get_job("job-1") == claimed


def test_heartbeats_keep_a_job_and_say_which_are_still_ours(backend):
    a, b = backend.open(), backend.open()
    for i in range(3):
        create_job(a, job(f"job-{i}"))
    a.claim_next_job("replica-a")
    a.claim_next_job("replica-a")
    b.claim_next_job("replica-b")
    a.update_job("job-1", state=JOB_SUCCEEDED)
    first = a.get_job("job-0").heartbeat_at
    time.sleep(0.01)
    # job-1 is finished, job-2 is b's, job-9 does not exist: only job-0 is still a's
    assert a.heartbeat_jobs("replica-a", ["job-0", "job-1", "job-2", "job-9"]) == {"job-0"}
    assert a.get_job("job-0").heartbeat_at > first
    assert a.heartbeat_jobs("replica-a", []) == set()
    for _ in range(3):  # renewed in time, the lease never expires
        time.sleep(LEASE_S / 2)
        assert a.heartbeat_jobs("replica-a", ["job-0"]) == {"job-0"}
        assert b.heartbeat_jobs("replica-b", ["job-2"]) == {"job-2"}
        assert b.requeue_expired_jobs(max_attempts=2, lease_s=LEASE_S) == []


def test_a_dead_replicas_job_is_requeued_after_its_lease_and_claimed_again(backend):
    a, b = backend.open(), backend.open()
    create_job(a, job("job-1"))
    a.claim_next_job("replica-a")
    assert b.requeue_expired_jobs(max_attempts=2, lease_s=LEASE_S) == []  # still live
    expire()  # replica a stops heartbeating: it was killed
    (requeued,) = b.requeue_expired_jobs(max_attempts=2, lease_s=LEASE_S)
    assert (requeued.id, requeued.state, requeued.owner) == ("job-1", JOB_QUEUED, "replica-a")
    again = b.claim_next_job("replica-b")
    assert (again.id, again.owner, again.attempts) == ("job-1", "replica-b", 2)
    # a comes back (or was only cut off): its heartbeat says the job is no longer its own
    assert a.heartbeat_jobs("replica-a", ["job-1"]) == set()
    assert b.heartbeat_jobs("replica-b", ["job-1"]) == {"job-1"}


def test_a_lost_run_is_requeued_only_while_it_is_still_that_run(backend):
    a, b = backend.open(), backend.open()
    create_job(a, job("job-1"))
    claimed = a.claim_next_job("replica-a")
    assert a.requeue_job("job-1", "replica-b", claimed.attempts) is None  # not b's
    assert a.requeue_job("job-1", "replica-a", claimed.attempts + 1) is None  # not that run
    requeued = a.requeue_job("job-1", "replica-a", claimed.attempts)
    assert (requeued.state, requeued.attempts) == (JOB_QUEUED, 1)
    assert a.requeue_job("job-1", "replica-a", 1) is None  # once
    again = b.claim_next_job("replica-b")
    assert (again.owner, again.attempts) == ("replica-b", 2)
    assert a.requeue_job("job-1", "replica-a", 1) is None  # another replica has it now
    a.update_job("job-1", state=JOB_SUCCEEDED)
    assert b.requeue_job("job-1", "replica-b", 2) is None  # finished: stays so
    assert b.get_job("job-1").state == JOB_SUCCEEDED


def test_an_expired_job_out_of_attempts_fails_with_the_reason(backend):
    a, b = backend.open(), backend.open()
    create_job(a, job("job-1"))
    a.claim_next_job("replica-a")
    expire()
    (failed,) = b.requeue_expired_jobs(max_attempts=1, lease_s=LEASE_S)
    assert (failed.state, failed.finished_at is not None) == (JOB_FAILED, True)
    assert "replica 'replica-a' stopped renewing its lease" in failed.reason
    assert "1 attempt(s)" in failed.reason and "PARETO_JOB_MAX_ATTEMPTS=1" in failed.reason
    assert b.get_job("job-1") == failed
    assert b.requeue_expired_jobs(max_attempts=1, lease_s=LEASE_S) == []


def test_a_replica_starting_recovers_its_own_jobs_at_once_but_not_a_live_replicas(backend):
    a, b = backend.open(), backend.open()
    for i in range(2):
        create_job(a, job(f"job-{i}"))
    a.claim_next_job("replica-a")  # job-0: a is alive and renewing
    b.claim_next_job("replica-b")  # job-1: b was restarted (its workers died with it)
    restarted = backend.open()
    changed = restarted.recover_interrupted_jobs(2, "replica-b", lease_s=30.0)
    assert [(j.id, j.state) for j in changed] == [("job-1", JOB_QUEUED)]
    assert a.get_job("job-0").state == JOB_RUNNING and a.get_job("job-0").owner == "replica-a"
    assert a.heartbeat_jobs("replica-a", ["job-0"]) == {"job-0"}


def test_recovery_at_start_also_takes_expired_leases_of_other_replicas(backend):
    a = backend.open()
    create_job(a, job("job-1"))
    a.claim_next_job("replica-a")
    expire()
    changed = backend.open().recover_interrupted_jobs(2, "replica-b", lease_s=LEASE_S)
    assert [(j.id, j.state, j.owner) for j in changed] == [("job-1", JOB_QUEUED, "replica-a")]


def test_a_running_job_from_before_leases_counts_as_expired(backend):
    """Rows written before migration 4 have no owner and no heartbeat."""
    a = backend.open()
    create_job(a, job("job-1"))
    a.claim_next_job()
    with a._tx() as c:
        c.execute("UPDATE jobs SET owner = '', heartbeat_at = NULL WHERE id = ?", ("job-1",))
    (requeued,) = a.requeue_expired_jobs(max_attempts=2, lease_s=3600.0)
    assert requeued.state == JOB_QUEUED


def test_the_queue_bound_refuses_the_next_job_and_changes_nothing(backend):
    a = backend.open()
    for i in range(3):
        create_job(a, job(f"job-{i}"), max_queued=3)
    with pytest.raises(ResourceExhausted, match=r"3 job\(s\) QUEUED.*PARETO_MAX_QUEUED_JOBS=3"):
        create_job(a, job("job-3"), max_queued=3)
    assert [j.id for j in a.list_jobs()] == ["job-2", "job-1", "job-0"]
    assert a.list_events("job-3") == []
    a.claim_next_job("replica-a")  # a running job no longer counts
    assert create_job(a, job("job-3"), max_queued=3).state == JOB_QUEUED
    assert create_job(a, job("job-4")).state == JOB_QUEUED  # 0: no bound


def test_job_records_keep_their_new_fields(backend):
    a = backend.open()
    given = JobRecord("job-1", "m", 1, (), {}, {}, {}, owner="someone", heartbeat_at=now())
    created = create_job(a, given)
    assert (created.owner, created.heartbeat_at) == ("", None)  # a new job is nobody's
    assert a.get_job("job-1") == created


def test_a_fenced_worker_writes_nothing_once_its_job_was_taken(backend):
    """A worker's repository is fenced to its run: after its replica lost the job (re-queued,
    then claimed again elsewhere), its events, variants and final state are refused."""
    from pareto_core.errors import JobFenced
    from service.store.records import JobEvent

    a, b, worker = backend.open(), backend.open(), backend.open()
    create_job(a, job("job-1"))
    claimed = a.claim_next_job("replica-a")
    worker.fence("job-1", claimed.attempts)
    worker.add_event(JobEvent("job-1", 0, JOB_RUNNING, "step", 10.0, "still ours"))
    expire()
    b.requeue_expired_jobs(max_attempts=2, lease_s=LEASE_S)
    with pytest.raises(JobFenced, match="QUEUED in run 1"):  # re-queued, not yet claimed
        worker.update_job("job-1", percent=50.0)
    b.claim_next_job("replica-b")
    events_before = b.list_events("job-1")
    with pytest.raises(JobFenced, match="RUNNING in run 2"):
        worker.update_job("job-1", state=JOB_SUCCEEDED)
    with pytest.raises(JobFenced):
        worker.add_event(JobEvent("job-1", 0, JOB_RUNNING, "step", 90.0, "stale"))
    now_ = b.get_job("job-1")
    assert (now_.state, now_.owner, now_.attempts, now_.percent) == (
        JOB_RUNNING,
        "replica-b",
        2,
        0.0,
    )
    assert b.list_events("job-1") == events_before
    # the current run's worker, fenced to run 2, writes as usual, its final state included
    current = backend.open()
    current.fence("job-1", 2)
    assert current.update_job("job-1", state=JOB_SUCCEEDED).state == JOB_SUCCEEDED
    current.add_event(JobEvent("job-1", 0, JOB_SUCCEEDED, "", 100.0, "done"))
