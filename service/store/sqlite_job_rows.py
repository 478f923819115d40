"""Rows of `jobs` and `job_events` <-> records, and the statements both job mixins share."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pareto_core.errors import InvalidArgument, NotFound
from service.store.records import JOB_STATES, JobEvent, JobRecord
from service.store.sql_codec import (
    from_json,
    now,
    recipe_from_data,
    recipe_to_data,
    time_from_text,
    time_to_text,
    to_json,
)
from service.store.sql_types import Connection

COLUMNS = (
    "id, model, model_version, recipes, datasets, quality_budget, evaluation, state, reason, "
    "percent, variant_ids, attempts, created_at, started_at, finished_at, owner, heartbeat_at"
)
EVENT_COLUMNS = "job_id, sequence, state, step, percent, message, metrics, time"


def row_to_job(row: Any) -> JobRecord:
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
        owner=row["owner"],
        heartbeat_at=time_from_text(row["heartbeat_at"]),
    )


def job_to_row(job: JobRecord) -> tuple[Any, ...]:
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
        job.owner,
        time_to_text(job.heartbeat_at),
    )


def row_to_event(row: Any) -> JobEvent:
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


def check_state(state: object, field: str = "state") -> None:
    if state not in JOB_STATES:
        raise InvalidArgument(f"{field} must be one of {', '.join(JOB_STATES)}, got {state!r}")


def select_job(c: Connection, job_id: str, row_lock: str = "") -> JobRecord:
    """The job (NotFound if none); `row_lock` is the backend's FOR UPDATE when the
    transaction will write it back."""
    row = c.execute(f"SELECT {COLUMNS} FROM jobs WHERE id = ?{row_lock}", (job_id,)).fetchone()
    if row is None:
        raise NotFound(f"job {job_id!r} not found")
    return row_to_job(row)


def write_job(c: Connection, job: JobRecord) -> None:
    """Write back the mutable columns of an existing job."""
    c.execute(
        "UPDATE jobs SET state = ?, reason = ?, percent = ?, variant_ids = ?, attempts = ?, "
        "started_at = ?, finished_at = ?, owner = ?, heartbeat_at = ? WHERE id = ?",
        (
            job.state,
            job.reason,
            float(job.percent),
            to_json(list(job.variant_ids)),
            job.attempts,
            time_to_text(job.started_at),
            time_to_text(job.finished_at),
            job.owner,
            time_to_text(job.heartbeat_at),
            job.id,
        ),
    )


def insert_event(c: Connection, event: JobEvent) -> JobEvent:
    """Append with the next sequence number of its job (MAX + 1: the caller's transaction
    must be serialized, which `_tx()` is)."""
    sequence = c.execute(
        "SELECT COALESCE(MAX(sequence), 0) + 1 FROM job_events WHERE job_id = ?", (event.job_id,)
    ).fetchone()[0]
    stored = replace(event, sequence=sequence, metrics=dict(event.metrics), time=now())
    c.execute(
        f"INSERT INTO job_events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
