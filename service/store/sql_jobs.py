"""`JobRepository` in SQL shared by both backends: a mixin (tables `jobs`, `job_events`).

The server's scheduler and the job worker processes (and, with PostgreSQL, other
replicas) share the database. Every change is one transaction that reads the row and
writes it back, so transitions are atomic across processes: a job that reached a final
state (SUCCEEDED, FAILED, CANCELLED) is never changed again. Claiming, leases and
recovery are in `sqlite_job_leases.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

from pareto_core.errors import AlreadyExists, NotFound, ResourceExhausted
from service.store.interfaces import JobRepository
from service.store.records import JOB_FINAL_STATES, JOB_QUEUED, JobEvent, JobRecord
from service.store.sql_codec import now
from service.store.sql_references import require_model
from service.store.sql_types import Connection
from service.store.sqlite_job_rows import (
    COLUMNS,
    EVENT_COLUMNS,
    check_state,
    insert_event,
    job_to_row,
    row_to_event,
    row_to_job,
    select_job,
    write_job,
)

UPDATABLE_FIELDS = frozenset({"state", "reason", "percent", "variant_ids", "finished_at"})


def _check_queue(c: Connection, max_queued: int) -> None:
    if max_queued <= 0:
        return
    queued = c.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (JOB_QUEUED,)).fetchone()[0]
    if queued >= max_queued:
        raise ResourceExhausted(
            f"the job queue is full: {queued} job(s) QUEUED, the limit is "
            f"PARETO_MAX_QUEUED_JOBS={max_queued}; wait for some to start or cancel some"
        )


class SqlJobs(JobRepository):
    """Needs `_tx()` (a write transaction), `_query(sql, params)` and `_row_lock`."""

    _tx: Callable[..., AbstractContextManager[Connection]]
    _query: Callable[..., list[Any]]
    _row_lock: str

    def create_job(self, record: JobRecord, max_queued: int = 0) -> JobRecord:
        """Also NotFound if a dataset it names is gone (checked in the same transaction,
        so `delete_dataset` and `create_job` cannot interleave), and ResourceExhausted
        when `max_queued` (> 0) jobs are QUEUED already."""
        job = replace(
            record,
            state=JOB_QUEUED,
            reason="",
            percent=0.0,
            variant_ids=(),
            attempts=0,
            created_at=now(),
            started_at=None,
            finished_at=None,
            owner="",
            heartbeat_at=None,
        )
        with self._tx() as c:
            if c.execute("SELECT 1 FROM jobs WHERE id = ?", (job.id,)).fetchone():
                raise AlreadyExists(f"job {job.id!r} already exists")
            require_model(c, job.model, job.model_version)
            for role, name in sorted(job.datasets.items()):
                if not c.execute("SELECT 1 FROM datasets WHERE name = ?", (name,)).fetchone():
                    raise NotFound(f"datasets[{role!r}]: dataset {name!r} not found")
            _check_queue(c, max_queued)
            placeholders = ", ".join("?" * len(COLUMNS.split(",")))
            c.execute(f"INSERT INTO jobs ({COLUMNS}) VALUES ({placeholders})", job_to_row(job))
            what = f"{len(job.recipes)} recipe(s)" if job.recipes else "a search"
            message = f"queued: {what} for model {job.model!r} version {job.model_version}"
            insert_event(c, JobEvent(job.id, 0, JOB_QUEUED, "", 0.0, message))
        return job

    def get_job(self, job_id: str) -> JobRecord:
        rows = self._query(f"SELECT {COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise NotFound(f"job {job_id!r} not found")
        return row_to_job(rows[0])

    def list_jobs(self, model: str = "") -> list[JobRecord]:
        if model:
            sql = f"SELECT {COLUMNS} FROM jobs WHERE model = ? ORDER BY seq DESC"
            rows = self._query(sql, (model,))
        else:
            rows = self._query(f"SELECT {COLUMNS} FROM jobs ORDER BY seq DESC")
        return [row_to_job(r) for r in rows]

    def count_jobs_by_state(self) -> dict[str, int]:
        rows = self._query("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        return {state: count for state, count in rows}

    def update_job(self, job_id: str, **fields: Any) -> JobRecord:
        unknown = sorted(set(fields) - UPDATABLE_FIELDS)
        if unknown:
            raise TypeError(
                f"update_job: cannot set {unknown}; settable: {sorted(UPDATABLE_FIELDS)}"
            )
        if "state" in fields:
            check_state(fields["state"])
        if "variant_ids" in fields:
            fields["variant_ids"] = tuple(fields["variant_ids"])
        with self._tx() as c:
            job = select_job(c, job_id, self._row_lock)
            if job.state in JOB_FINAL_STATES:
                return job
            if fields.get("state") in JOB_FINAL_STATES and fields.get("finished_at") is None:
                fields["finished_at"] = now()
            updated = replace(job, **fields)
            write_job(c, updated)
        return updated

    def add_event(self, event: JobEvent) -> JobEvent:
        check_state(event.state, "event.state")
        with self._tx() as c:
            if not c.execute("SELECT 1 FROM jobs WHERE id = ?", (event.job_id,)).fetchone():
                raise NotFound(f"job {event.job_id!r} not found")
            return insert_event(c, event)

    def list_events(self, job_id: str, from_sequence: int = 0) -> list[JobEvent]:
        rows = self._query(
            f"SELECT {EVENT_COLUMNS} FROM job_events WHERE job_id = ? AND sequence >= ? "
            "ORDER BY sequence",
            (job_id, from_sequence),
        )
        return [row_to_event(r) for r in rows]
