"""`JobRepository` over SQLite: a mixin of `SqliteRepository` (tables `jobs`, `job_events`).

The server's scheduler and the job worker processes share the database file. Every change
is one BEGIN IMMEDIATE transaction that reads the row and writes it back, so transitions
are atomic across processes: two schedulers never claim one job, and a job that reached a
final state (SUCCEEDED, FAILED, CANCELLED) is never changed again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

from service.errors import AlreadyExists, InvalidArgument, NotFound
from service.store.engine_repository import JobRepository
from service.store.records import (
    JOB_FAILED,
    JOB_FINAL_STATES,
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_STATES,
    JobEvent,
    JobRecord,
)
from service.store.sqlite_codec import (
    from_json,
    now,
    recipe_from_data,
    recipe_to_data,
    time_from_text,
    time_to_text,
    to_json,
)

_COLUMNS = (
    "id, model, model_version, recipes, datasets, quality_budget, evaluation, state, reason, "
    "percent, variant_ids, attempts, created_at, started_at, finished_at"
)
_EVENT_COLUMNS = "job_id, sequence, state, step, percent, message, metrics, time"
UPDATABLE_FIELDS = frozenset({"state", "reason", "percent", "variant_ids", "finished_at"})


def _row_to_job(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        model=row["model"],
        model_version=row["model_version"],
        recipes=tuple(recipe_from_data(r) for r in from_json(row["recipes"])),
        datasets=from_json(row["datasets"]),
        quality_budget=from_json(row["quality_budget"]),
        evaluation=from_json(row["evaluation"]),
        state=row["state"],
        reason=row["reason"],
        percent=row["percent"],
        variant_ids=tuple(from_json(row["variant_ids"])),
        attempts=row["attempts"],
        created_at=time_from_text(row["created_at"]),
        started_at=time_from_text(row["started_at"]),
        finished_at=time_from_text(row["finished_at"]),
    )


def _job_to_row(job: JobRecord) -> tuple[Any, ...]:
    return (
        job.id,
        job.model,
        job.model_version,
        to_json([recipe_to_data(r) for r in job.recipes]),
        to_json(job.datasets),
        to_json(job.quality_budget),
        to_json(job.evaluation),
        job.state,
        job.reason,
        float(job.percent),
        to_json(list(job.variant_ids)),
        job.attempts,
        time_to_text(job.created_at),
        time_to_text(job.started_at),
        time_to_text(job.finished_at),
    )


def _row_to_event(row: sqlite3.Row) -> JobEvent:
    return JobEvent(
        job_id=row["job_id"],
        sequence=row["sequence"],
        state=row["state"],
        step=row["step"],
        percent=row["percent"],
        message=row["message"],
        metrics=from_json(row["metrics"]),
        time=time_from_text(row["time"]),
    )


def _check_state(state: object, field: str = "state") -> None:
    if state not in JOB_STATES:
        raise InvalidArgument(f"{field} must be one of {', '.join(JOB_STATES)}, got {state!r}")


def _select_job(c: sqlite3.Connection, job_id: str) -> JobRecord:
    row = c.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise NotFound(f"job {job_id!r} not found")
    return _row_to_job(row)


def _write_job(c: sqlite3.Connection, job: JobRecord) -> None:
    """Write back the mutable columns of an existing job."""
    c.execute(
        "UPDATE jobs SET state = ?, reason = ?, percent = ?, variant_ids = ?, attempts = ?, "
        "started_at = ?, finished_at = ? WHERE id = ?",
        (
            job.state,
            job.reason,
            float(job.percent),
            to_json(list(job.variant_ids)),
            job.attempts,
            time_to_text(job.started_at),
            time_to_text(job.finished_at),
            job.id,
        ),
    )


def _insert_event(c: sqlite3.Connection, event: JobEvent) -> JobEvent:
    sequence = c.execute(
        "SELECT COALESCE(MAX(sequence), 0) + 1 FROM job_events WHERE job_id = ?", (event.job_id,)
    ).fetchone()[0]
    stored = replace(event, sequence=sequence, metrics=dict(event.metrics), time=now())
    c.execute(
        f"INSERT INTO job_events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            stored.job_id,
            stored.sequence,
            stored.state,
            stored.step,
            float(stored.percent),
            stored.message,
            to_json({k: float(v) for k, v in stored.metrics.items()}),
            time_to_text(stored.time),
        ),
    )
    return stored


class SqliteJobs(JobRepository):
    """Needs `_tx()` (a write transaction) and `_query(sql, params)` from SqliteRepository."""

    _tx: Callable[[], AbstractContextManager[sqlite3.Connection]]
    _query: Callable[..., list[sqlite3.Row]]

    def create_job(self, record: JobRecord) -> JobRecord:
        """Also NotFound if a dataset it names is gone (checked in the same transaction,
        so `delete_dataset` and `create_job` cannot interleave)."""
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
        )
        with self._tx() as c:
            if c.execute("SELECT 1 FROM jobs WHERE id = ?", (job.id,)).fetchone():
                raise AlreadyExists(f"job {job.id!r} already exists")
            for role, name in sorted(job.datasets.items()):
                if not c.execute("SELECT 1 FROM datasets WHERE name = ?", (name,)).fetchone():
                    raise NotFound(f"datasets[{role!r}]: dataset {name!r} not found")
            placeholders = ", ".join("?" * len(_COLUMNS.split(",")))
            c.execute(f"INSERT INTO jobs ({_COLUMNS}) VALUES ({placeholders})", _job_to_row(job))
            message = (
                f"queued: {len(job.recipes)} recipe(s) for model {job.model!r} "
                f"version {job.model_version}"
            )
            _insert_event(c, JobEvent(job.id, 0, JOB_QUEUED, "", 0.0, message))
        return job

    def get_job(self, job_id: str) -> JobRecord:
        rows = self._query(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise NotFound(f"job {job_id!r} not found")
        return _row_to_job(rows[0])

    def list_jobs(self, model: str = "") -> list[JobRecord]:
        if model:
            sql = f"SELECT {_COLUMNS} FROM jobs WHERE model = ? ORDER BY seq DESC"
            rows = self._query(sql, (model,))
        else:
            rows = self._query(f"SELECT {_COLUMNS} FROM jobs ORDER BY seq DESC")
        return [_row_to_job(r) for r in rows]

    def count_jobs_by_state(self) -> dict[str, int]:
        rows = self._query("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        return {state: count for state, count in rows}

    def claim_next_job(self) -> JobRecord | None:
        with self._tx() as c:  # BEGIN IMMEDIATE: one claimer at a time, across processes
            row = c.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE state = ? ORDER BY seq LIMIT 1", (JOB_QUEUED,)
            ).fetchone()
            if row is None:
                return None
            job = _row_to_job(row)
            claimed = replace(job, state=JOB_RUNNING, attempts=job.attempts + 1, started_at=now())
            _write_job(c, claimed)
        return claimed

    def update_job(self, job_id: str, **fields: Any) -> JobRecord:
        unknown = sorted(set(fields) - UPDATABLE_FIELDS)
        if unknown:
            raise TypeError(
                f"update_job: cannot set {unknown}; settable: {sorted(UPDATABLE_FIELDS)}"
            )
        if "state" in fields:
            _check_state(fields["state"])
        if "variant_ids" in fields:
            fields["variant_ids"] = tuple(fields["variant_ids"])
        with self._tx() as c:
            job = _select_job(c, job_id)
            if job.state in JOB_FINAL_STATES:
                return job
            if fields.get("state") in JOB_FINAL_STATES and fields.get("finished_at") is None:
                fields["finished_at"] = now()
            updated = replace(job, **fields)
            _write_job(c, updated)
        return updated

    def recover_interrupted_jobs(self, max_attempts: int) -> list[JobRecord]:
        changed = []
        with self._tx() as c:
            rows = c.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE state = ? ORDER BY seq", (JOB_RUNNING,)
            ).fetchall()
            for job in map(_row_to_job, rows):
                if job.attempts >= max_attempts:
                    reason = (
                        f"interrupted by a server restart after {job.attempts} attempt(s) "
                        f"(PARETO_JOB_MAX_ATTEMPTS={max_attempts})"
                    )
                    job = replace(job, state=JOB_FAILED, reason=reason, finished_at=now())
                else:
                    job = replace(job, state=JOB_QUEUED)
                _write_job(c, job)
                changed.append(job)
        return changed

    def add_event(self, event: JobEvent) -> JobEvent:
        _check_state(event.state, "event.state")
        with self._tx() as c:
            if not c.execute("SELECT 1 FROM jobs WHERE id = ?", (event.job_id,)).fetchone():
                raise NotFound(f"job {event.job_id!r} not found")
            return _insert_event(c, event)

    def list_events(self, job_id: str, from_sequence: int = 0) -> list[JobEvent]:
        rows = self._query(
            f"SELECT {_EVENT_COLUMNS} FROM job_events WHERE job_id = ? AND sequence >= ? "
            "ORDER BY sequence",
            (job_id, from_sequence),
        )
        return [_row_to_event(r) for r in rows]
