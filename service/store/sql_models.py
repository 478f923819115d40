"""`ModelRepository` in SQL shared by both backends (tables `models`, `model_names`).

`model_names` keeps the last version per name, so versions are never reused while the
name exists; picking the next one is a check-then-insert, which is why it runs in the
backend's serialized write transaction (`_tx()`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from pareto_core import formats
from pareto_core.errors import AlreadyExists, InvalidArgument, JobFenced, NotFound
from pareto_core.tensors import Signature
from service.store.interfaces import ModelRepository
from service.store.records import JOB_QUEUED, ModelRecord, ModelSource
from service.store.sql_codec import specs_from_json, specs_to_json
from service.store.sql_references import refuse_model_delete
from service.store.sql_types import Connection

_COLUMNS = (
    "name, version, format, sha256, size_bytes, description, labels, inputs, outputs, "
    "created_at, source_sha256, source"
)


def _row_to_record(row: Any) -> ModelRecord:
    source = json.loads(row["source"])
    return ModelRecord(
        name=row["name"],
        version=row["version"],
        format=row["format"],
        sha256=row["sha256"],
        size_bytes=row["size_bytes"],
        signature=Signature(specs_from_json(row["inputs"]), specs_from_json(row["outputs"])),
        description=row["description"],
        labels=json.loads(row["labels"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        source=ModelSource.from_json(source) if source else None,
    )


def _check_version(version: int) -> None:
    if version < 0:
        raise InvalidArgument(f"version must be >= 0 (0 means latest), got {version}")


def already_exists_message(name: str, latest_version: int) -> str:
    return (
        f"model {name!r} already exists (latest version {latest_version}); upload with "
        f"new_version=true to add it as version {latest_version + 1}"
    )


class SqlModels(ModelRepository):
    """Needs `_tx()` (a write transaction) and `_query(sql, params)` from the backend."""

    _tx: Callable[..., AbstractContextManager[Connection]]
    _query: Callable[..., list[Any]]
    write_generation: int = 0  # see Repository
    _fence: tuple[str, int] | None = None

    def fence(self, job_id: str, attempt: int) -> None:
        """Make every later write through this object conditional on job `job_id` still
        being in run `attempt`: neither re-queued (its replica lost the lease) nor claimed
        again. A job worker fences its repository, so a worker whose replica stalled past
        its lease changes nothing once another replica has the job (JobFenced)."""
        self._fence = (job_id, attempt)

    def _check_fence(self, c: Connection) -> None:
        """Inside a write transaction. Re-queuing and claiming write under the same write
        serialization (BEGIN IMMEDIATE; the PostgreSQL advisory lock, or a claim's row lock
        after the re-queue committed), so what this reads holds until the commit."""
        if self._fence is None:
            return
        job_id, attempt = self._fence
        row = c.execute("SELECT attempts, state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None or row[0] != attempt or row[1] == JOB_QUEUED:
            found = "gone" if row is None else f"{row[1]} in run {row[0]}"
            raise JobFenced(f"job {job_id} is no longer this worker's run {attempt} ({found})")

    def add_model(self, record: ModelRecord, new_version: bool) -> ModelRecord:
        formats.check_stored(record.format)
        created_at = datetime.now(UTC)
        with self._tx() as c:
            row = c.execute(
                "SELECT last_version FROM model_names WHERE name = ?", (record.name,)
            ).fetchone()
            last = row[0] if row else 0
            if row and not new_version:
                raise AlreadyExists(already_exists_message(record.name, last))
            version = last + 1
            c.execute(
                "INSERT INTO model_names (name, last_version) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET last_version = excluded.last_version",
                (record.name, version),
            )
            c.execute(
                f"INSERT INTO models ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.name,
                    version,
                    record.format,
                    record.sha256,
                    record.size_bytes,
                    record.description,
                    json.dumps(record.labels, sort_keys=True),
                    specs_to_json(record.signature.inputs),
                    specs_to_json(record.signature.outputs),
                    created_at.isoformat(),
                    record.source.sha256 if record.source else None,
                    json.dumps(record.source.to_json() if record.source else {}, sort_keys=True),
                ),
            )
        return replace(record, version=version, labels=dict(record.labels), created_at=created_at)

    def get_model(self, name: str, version: int = 0) -> ModelRecord:
        _check_version(version)
        rows = self._query(
            f"SELECT {_COLUMNS} FROM models WHERE name = ? ORDER BY version", (name,)
        )
        if not rows:
            raise NotFound(f"model {name!r} not found")
        if version == 0:
            return _row_to_record(rows[-1])
        match = next((r for r in rows if r["version"] == version), None)
        if match is None:
            versions = ", ".join(str(r["version"]) for r in rows)
            raise NotFound(f"model {name!r} has no version {version} (versions: {versions})")
        return _row_to_record(match)

    def list_models(self, label_selector: dict[str, str] | None = None) -> list[ModelRecord]:
        rows = self._query(f"SELECT {_COLUMNS} FROM models ORDER BY name, version")
        records = [_row_to_record(r) for r in rows]
        if not label_selector:
            return records
        wanted = label_selector.items()
        return [r for r in records if wanted <= r.labels.items()]

    def delete_model(
        self, name: str, version: int = 0, check: Callable[[], None] | None = None
    ) -> list[ModelRecord]:
        _check_version(version)
        with self._tx() as c:
            rows = c.execute(
                f"SELECT {_COLUMNS} FROM models WHERE name = ? ORDER BY version", (name,)
            ).fetchall()
            if not rows:
                raise NotFound(f"model {name!r} not found")
            doomed = [r for r in rows if version in (0, r["version"])]
            if not doomed:
                versions = ", ".join(str(r["version"]) for r in rows)
                raise NotFound(f"model {name!r} has no version {version} (versions: {versions})")
            refuse_model_delete(c, name, version)
            if check is not None:
                check()
            if version == 0:
                c.execute("DELETE FROM models WHERE name = ?", (name,))
            else:
                c.execute("DELETE FROM models WHERE name = ? AND version = ?", (name, version))
            if len(doomed) == len(rows):  # the name is gone: a fresh upload starts at 1
                c.execute("DELETE FROM model_names WHERE name = ?", (name,))
                c.execute("DELETE FROM serving_configs WHERE name = ?", (name,))
        return [_row_to_record(r) for r in doomed]

    def name_exists(self, name: str) -> bool:
        return bool(self._query("SELECT 1 FROM models WHERE name = ? LIMIT 1", (name,)))

    def referenced_blobs(self) -> set[str]:
        """Blobs of models (and their sources), datasets and variants: garbage collection
        keeps all of them."""
        rows = self._query(
            "SELECT sha256 FROM models UNION SELECT source_sha256 FROM models "
            "WHERE source_sha256 IS NOT NULL UNION SELECT sha256 FROM datasets "
            "UNION SELECT sha256 FROM variants"
        )
        return {r[0] for r in rows}
