"""Deployments in SQL shared by both backends: a mixin (table `deployments`).

A deployment is one row; its targets, canary plan and canary status are one JSON column,
so every change (traffic split, canary step) is a single-row write: atomic and durable.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

from pareto_core.errors import AlreadyExists, FailedPrecondition, NotFound
from service.store.deployment_records import DeploymentRecord, spec_from_data, spec_to_data
from service.store.interfaces import DeploymentRepository
from service.store.sql_codec import from_json, now, time_from_text, time_to_text, to_json
from service.store.sql_references import require_targets
from service.store.sql_types import Connection

_COLUMNS = "name, model, spec, revision, created_at, updated_at"


def _row_to_deployment(row: Any) -> DeploymentRecord:
    return DeploymentRecord(
        name=row["name"],
        model=row["model"],
        revision=row["revision"],
        created_at=time_from_text(row["created_at"]),
        updated_at=time_from_text(row["updated_at"]),
        **spec_from_data(from_json(row["spec"])),
    )


class SqlDeployments(DeploymentRepository):
    """Needs `_tx()` (a write transaction) and `_query(sql, params)` from the backend."""

    _tx: Callable[..., AbstractContextManager[Connection]]
    _query: Callable[..., list[Any]]

    def add_deployment(self, record: DeploymentRecord) -> DeploymentRecord:
        created = now()
        stored = replace(record, revision=1, created_at=created, updated_at=created)
        with self._tx() as c:
            if c.execute("SELECT 1 FROM deployments WHERE name = ?", (record.name,)).fetchone():
                raise AlreadyExists(
                    f"deployment {record.name!r} already exists; change its traffic with "
                    "UpdateTraffic or delete it first"
                )
            require_targets(c, record)
            c.execute(
                f"INSERT INTO deployments ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    stored.name,
                    stored.model,
                    to_json(spec_to_data(stored)),
                    stored.revision,
                    time_to_text(created),
                    time_to_text(created),
                ),
            )
        return stored

    def get_deployment(self, name: str) -> DeploymentRecord:
        rows = self._query(f"SELECT {_COLUMNS} FROM deployments WHERE name = ?", (name,))
        if not rows:
            raise NotFound(f"deployment {name!r} not found")
        return _row_to_deployment(rows[0])

    def list_deployments(self) -> list[DeploymentRecord]:
        rows = self._query(f"SELECT {_COLUMNS} FROM deployments ORDER BY name")
        return [_row_to_deployment(r) for r in rows]

    def update_deployment(self, record: DeploymentRecord) -> DeploymentRecord:
        """Store `record` if the stored revision is still `record.revision` (else nothing
        changes: FailedPrecondition); returns it with the next revision."""
        updated = replace(record, revision=record.revision + 1, updated_at=now())
        with self._tx() as c:
            row = c.execute(
                "SELECT revision FROM deployments WHERE name = ?", (record.name,)
            ).fetchone()
            if row is None:
                raise NotFound(f"deployment {record.name!r} not found")
            if row[0] != record.revision:
                raise FailedPrecondition(
                    f"deployment {record.name!r} changed meanwhile (revision {row[0]}, "
                    f"expected {record.revision}); retry"
                )
            c.execute(
                "UPDATE deployments SET spec = ?, revision = ?, updated_at = ? WHERE name = ?",
                (
                    to_json(spec_to_data(updated)),
                    updated.revision,
                    time_to_text(updated.updated_at),
                    record.name,
                ),
            )
        return updated

    def delete_deployment(self, name: str) -> DeploymentRecord:
        with self._tx() as c:
            sql = f"SELECT {_COLUMNS} FROM deployments WHERE name = ?"
            row = c.execute(sql, (name,)).fetchone()
            if row is None:
                raise NotFound(f"deployment {name!r} not found")
            c.execute("DELETE FROM deployments WHERE name = ?", (name,))
        return _row_to_deployment(row)
