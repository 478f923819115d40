"""Claiming jobs, job leases and recovery, in SQL shared by both backends (a mixin).

A replica (PARETO_REPLICA_ID) claims a QUEUED job by moving it to RUNNING with itself as
`owner` and `heartbeat_at` = now, then renews that lease (`heartbeat_jobs`) while its
worker runs. A RUNNING job whose lease is older than PARETO_JOB_LEASE_S belongs to a
replica that died (or lost the database): any replica re-queues it (`requeue_expired_jobs`),
or FAILs it once it used PARETO_JOB_MAX_ATTEMPTS runs. At start a replica also re-queues
its own RUNNING jobs at once (its workers died with it), but never a live replica's.

Lease times come from the backend's clock (`_clock`: PostgreSQL's, shared by all
replicas). Claims and heartbeats do not take the backend-wide write lock: the claim locks
the one row it takes (FOR UPDATE SKIP LOCKED in PostgreSQL, so concurrent claimers pass
each other by), and the rest lock the rows they rewrite, always in `seq` order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime, timedelta

from service.store.interfaces import JobRepository
from service.store.records import JOB_FAILED, JOB_QUEUED, JOB_RUNNING, JobRecord
from service.store.sql_codec import time_to_text
from service.store.sql_types import Connection
from service.store.sqlite_job_rows import COLUMNS, row_to_job, write_job


def _expired(job: JobRecord, now: datetime, lease_s: float) -> bool:
    """No heartbeat (a row from before leases existed) counts as expired."""
    return job.heartbeat_at is None or job.heartbeat_at <= now - timedelta(seconds=lease_s)


class SqlJobLeases(JobRepository):
    """Needs `_tx()`, `_row_lock`, `_claim_lock` and `_clock(c)` from the backend."""

    _tx: Callable[..., AbstractContextManager[Connection]]
    _row_lock: str
    _claim_lock: str
    _clock: Callable[[Connection], datetime]

    def claim_next_job(self, owner: str = "") -> JobRecord | None:
        """Atomically move the oldest QUEUED job to RUNNING for `owner` (attempts + 1,
        started_at and heartbeat_at now). Never hands one job to two claimers."""
        with self._tx(serialized=False) as c:
            row = c.execute(
                f"SELECT {COLUMNS} FROM jobs WHERE state = ? ORDER BY seq LIMIT 1"
                f"{self._claim_lock}",
                (JOB_QUEUED,),
            ).fetchone()
            if row is None:
                return None
            job = row_to_job(row)
            at = self._clock(c)
            claimed = replace(
                job,
                state=JOB_RUNNING,
                attempts=job.attempts + 1,
                started_at=at,
                owner=owner,
                heartbeat_at=at,
            )
            write_job(c, claimed)
        return claimed

    def heartbeat_jobs(self, owner: str, job_ids: Iterable[str]) -> set[str]:
        """Renew the lease of those of `job_ids` that are still RUNNING and owned by
        `owner`; returns them. A job missing from the answer was finished, cancelled, or
        re-queued (and maybe claimed) by another replica: its worker must stop."""
        wanted = set(job_ids)
        if not wanted:
            return set()
        with self._tx(serialized=False) as c:
            rows = c.execute(
                f"SELECT id FROM jobs WHERE owner = ? AND state = ? ORDER BY seq{self._row_lock}",
                (owner, JOB_RUNNING),
            ).fetchall()
            mine = [r[0] for r in rows if r[0] in wanted]
            at = time_to_text(self._clock(c))
            for job_id in mine:
                c.execute("UPDATE jobs SET heartbeat_at = ? WHERE id = ?", (at, job_id))
        return set(mine)

    def requeue_job(self, job_id: str, owner: str, attempt: int) -> JobRecord | None:
        """Job `job_id`, RUNNING for `owner` in run `attempt`, back to QUEUED; None when it
        is no longer that (finished, cancelled, or re-queued by another replica)."""
        with self._tx(serialized=False) as c:
            row = c.execute(
                f"SELECT {COLUMNS} FROM jobs WHERE id = ?{self._row_lock}", (job_id,)
            ).fetchone()
            if row is None:
                return None
            job = row_to_job(row)
            if (job.state, job.owner, job.attempts) != (JOB_RUNNING, owner, attempt):
                return None
            job = replace(job, state=JOB_QUEUED)
            write_job(c, job)
        return job

    def requeue_expired_jobs(self, max_attempts: int, lease_s: float) -> list[JobRecord]:
        """RUNNING jobs whose lease is older than `lease_s` go back to QUEUED, or FAILED
        once they used `max_attempts` runs. Returns the jobs it changed (`owner` is still
        the replica that lost them)."""
        return self._recover(max_attempts, None, lease_s)

    def recover_interrupted_jobs(
        self, max_attempts: int, owner: str = "", lease_s: float | None = None
    ) -> list[JobRecord]:
        """At start-up: this replica's (`owner`) RUNNING jobs, and any whose lease expired
        (when `lease_s` is given), go back to QUEUED, or FAILED ("interrupted ...") once
        they used `max_attempts`. A live replica's jobs are left alone."""
        return self._recover(max_attempts, owner, lease_s)

    def _recover(
        self, max_attempts: int, owner: str | None, lease_s: float | None
    ) -> list[JobRecord]:
        changed = []
        with self._tx() as c:
            rows = c.execute(
                f"SELECT {COLUMNS} FROM jobs WHERE state = ? ORDER BY seq{self._row_lock}",
                (JOB_RUNNING,),
            ).fetchall()
            now = self._clock(c)
            for job in map(row_to_job, rows):
                if owner is not None and job.owner == owner:
                    why = "interrupted by a server restart"
                elif lease_s is not None and _expired(job, now, lease_s):
                    why = (
                        f"interrupted: replica {job.owner!r} stopped renewing its lease "
                        f"(PARETO_JOB_LEASE_S={lease_s:g})"
                    )
                else:
                    continue
                if job.attempts >= max_attempts:
                    reason = (
                        f"{why} after {job.attempts} attempt(s) "
                        f"(PARETO_JOB_MAX_ATTEMPTS={max_attempts})"
                    )
                    job = replace(job, state=JOB_FAILED, reason=reason, finished_at=now)
                else:
                    job = replace(job, state=JOB_QUEUED)
                write_job(c, job)
                changed.append(job)
        return changed
