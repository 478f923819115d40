"""`DatasetRepository` in SQL shared by both backends: a mixin (table `datasets`)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

from pareto_core.errors import AlreadyExists, FailedPrecondition, NotFound
from service.store.interfaces import DatasetRepository
from service.store.records import JOB_QUEUED, JOB_RUNNING, DatasetRecord
from service.store.sql_codec import (
    from_json,
    now,
    specs_from_json,
    specs_to_json,
    time_from_text,
    time_to_text,
)
from service.store.sql_types import Connection

_COLUMNS = "name, sha256, size_bytes, arrays, num_samples, has_labels, description, created_at"


def _row_to_dataset(row: Any) -> DatasetRecord:
    return DatasetRecord(
        name=row["name"],
        sha256=row["sha256"],
        size_bytes=row["size_bytes"],
        arrays=specs_from_json(row["arrays"]),
        num_samples=row["num_samples"],
        has_labels=bool(row["has_labels"]),
        description=row["description"],
        created_at=time_from_text(row["created_at"]),
    )


def dataset_exists_message(name: str) -> str:
    return f"dataset {name!r} already exists; delete it first or pick another name"


def active_jobs_using(c: Connection, dataset: str) -> list[str]:
    """Ids of QUEUED/RUNNING jobs that name `dataset` in any role."""
    rows = c.execute(
        "SELECT id, datasets FROM jobs WHERE state IN (?, ?) ORDER BY seq",
        (JOB_QUEUED, JOB_RUNNING),
    ).fetchall()
    return [r["id"] for r in rows if dataset in from_json(r["datasets"]).values()]


class SqlDatasets(DatasetRepository):
    """Needs `_tx()` (a write transaction) and `_query(sql, params)` from the backend."""

    _tx: Callable[..., AbstractContextManager[Connection]]
    _query: Callable[..., list[Any]]

    def add_dataset(self, record: DatasetRecord) -> DatasetRecord:
        stored = replace(record, created_at=now())
        with self._tx() as c:
            if c.execute("SELECT 1 FROM datasets WHERE name = ?", (record.name,)).fetchone():
                raise AlreadyExists(dataset_exists_message(record.name))
            c.execute(
                f"INSERT INTO datasets ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    stored.name,
                    stored.sha256,
                    stored.size_bytes,
                    specs_to_json(stored.arrays),
                    stored.num_samples,
                    int(stored.has_labels),
                    stored.description,
                    time_to_text(stored.created_at),
                ),
            )
        return stored

    def get_dataset(self, name: str) -> DatasetRecord:
        rows = self._query(f"SELECT {_COLUMNS} FROM datasets WHERE name = ?", (name,))
        if not rows:
            raise NotFound(f"dataset {name!r} not found")
        return _row_to_dataset(rows[0])

    def list_datasets(self) -> list[DatasetRecord]:
        rows = self._query(f"SELECT {_COLUMNS} FROM datasets ORDER BY name")
        return [_row_to_dataset(r) for r in rows]

    def delete_dataset(self, name: str) -> DatasetRecord:
        with self._tx() as c:
            row = c.execute(f"SELECT {_COLUMNS} FROM datasets WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"dataset {name!r} not found")
            users = active_jobs_using(c, name)
            if users:
                raise FailedPrecondition(
                    f"dataset {name!r} is used by queued or running job(s) "
                    f"{', '.join(users)}; wait for them to end or cancel them first"
                )
            c.execute("DELETE FROM datasets WHERE name = ?", (name,))
        return _row_to_dataset(row)
