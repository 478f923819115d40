"""`ModelRepository` over SQLite (stdlib sqlite3): the embedded default.

One connection, guarded by a lock, serves every thread. WAL + synchronous=FULL make each
committed transaction durable; writes use BEGIN IMMEDIATE so check-then-insert (such as
picking the next version) cannot race, even with another process on the same file.

The schema is versioned with PRAGMA user_version: `_MIGRATIONS[i]` takes the database from
version i to i+1. Later tables (deployments, ...) are new entries.

The compression engine's tables are served by mixins, one file each: `SqliteDatasets`,
`SqliteJobs`, `SqliteVariants`; they share this class's connection, lock and `_tx`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from runtimes.base import Signature
from service.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from service.store.repository import FORMATS, ModelRecord, ModelRepository
from service.store.sqlite_codec import specs_from_json, specs_to_json
from service.store.sqlite_datasets import SqliteDatasets
from service.store.sqlite_deployments import SqliteDeployments
from service.store.sqlite_jobs import SqliteJobs
from service.store.sqlite_variants import SqliteVariants

BUSY_TIMEOUT_MS = 10_000

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: models, and the per-name version counter (versions are never reused).
        """CREATE TABLE models (
            id          INTEGER PRIMARY KEY,
            name        TEXT    NOT NULL,
            version     INTEGER NOT NULL CHECK (version >= 1),
            format      TEXT    NOT NULL,
            sha256      TEXT    NOT NULL CHECK (length(sha256) = 64),
            size_bytes  INTEGER NOT NULL CHECK (size_bytes >= 0),
            description TEXT    NOT NULL DEFAULT '',
            labels      TEXT    NOT NULL DEFAULT '{}',
            inputs      TEXT    NOT NULL,
            outputs     TEXT    NOT NULL,
            created_at  TEXT    NOT NULL,
            UNIQUE (name, version)
        )""",
        "CREATE INDEX models_sha256 ON models (sha256)",
        """CREATE TABLE model_names (
            name         TEXT PRIMARY KEY,
            last_version INTEGER NOT NULL
        )""",
    ),
    (  # 2: the compression engine. `seq` orders rows (insertion order) in every table.
        """CREATE TABLE datasets (
            seq         INTEGER PRIMARY KEY,
            name        TEXT    NOT NULL UNIQUE,
            sha256      TEXT    NOT NULL CHECK (length(sha256) = 64),
            size_bytes  INTEGER NOT NULL CHECK (size_bytes >= 0),
            arrays      TEXT    NOT NULL,
            num_samples INTEGER NOT NULL CHECK (num_samples >= 0),
            has_labels  INTEGER NOT NULL CHECK (has_labels IN (0, 1)),
            description TEXT    NOT NULL DEFAULT '',
            created_at  TEXT    NOT NULL
        )""",
        "CREATE INDEX datasets_sha256 ON datasets (sha256)",
        """CREATE TABLE jobs (
            seq            INTEGER PRIMARY KEY,
            id             TEXT    NOT NULL UNIQUE,
            model          TEXT    NOT NULL,
            model_version  INTEGER NOT NULL CHECK (model_version >= 1),
            recipes        TEXT    NOT NULL,
            datasets       TEXT    NOT NULL DEFAULT '{}',
            quality_budget TEXT    NOT NULL DEFAULT '{}',
            evaluation     TEXT    NOT NULL DEFAULT '{}',
            state          TEXT    NOT NULL CHECK (
                state IN ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
            reason         TEXT    NOT NULL DEFAULT '',
            percent        REAL    NOT NULL DEFAULT 0,
            variant_ids    TEXT    NOT NULL DEFAULT '[]',
            attempts       INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            created_at     TEXT    NOT NULL,
            started_at     TEXT,
            finished_at    TEXT
        )""",
        "CREATE INDEX jobs_state ON jobs (state, seq)",
        "CREATE INDEX jobs_model ON jobs (model, seq)",
        """CREATE TABLE job_events (
            job_id   TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            sequence INTEGER NOT NULL CHECK (sequence >= 1),
            state    TEXT    NOT NULL,
            step     TEXT    NOT NULL DEFAULT '',
            percent  REAL    NOT NULL DEFAULT 0,
            message  TEXT    NOT NULL DEFAULT '',
            metrics  TEXT    NOT NULL DEFAULT '{}',
            time     TEXT    NOT NULL,
            PRIMARY KEY (job_id, sequence)
        )""",
        """CREATE TABLE variants (
            seq            INTEGER PRIMARY KEY,
            id             TEXT    NOT NULL UNIQUE,
            parent_model   TEXT    NOT NULL,
            parent_version INTEGER NOT NULL,
            job_id         TEXT    NOT NULL,
            recipe         TEXT    NOT NULL,
            format         TEXT    NOT NULL,
            sha256         TEXT    NOT NULL CHECK (length(sha256) = 64),
            size_bytes     INTEGER NOT NULL CHECK (size_bytes >= 0),
            inputs         TEXT    NOT NULL,
            outputs        TEXT    NOT NULL,
            metrics        TEXT    NOT NULL DEFAULT '{}',
            parent_metrics TEXT    NOT NULL DEFAULT '{}',
            budget_ok      INTEGER NOT NULL CHECK (budget_ok IN (0, 1)),
            budget_reason  TEXT    NOT NULL DEFAULT '',
            report         TEXT    NOT NULL DEFAULT '{}',
            created_at     TEXT    NOT NULL
        )""",
        "CREATE INDEX variants_parent ON variants (parent_model, seq)",
        "CREATE INDEX variants_sha256 ON variants (sha256)",
        "CREATE INDEX variants_job ON variants (job_id)",
    ),
    (  # 3: deployments (endpoint -> targets, weights, canary plan and status as JSON).
        """CREATE TABLE deployments (
            name       TEXT    PRIMARY KEY,
            model      TEXT    NOT NULL,
            spec       TEXT    NOT NULL,
            revision   INTEGER NOT NULL CHECK (revision >= 1),
            created_at TEXT    NOT NULL,
            updated_at TEXT    NOT NULL
        )""",
        "CREATE INDEX deployments_model ON deployments (model)",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)

_COLUMNS = (
    "name, version, format, sha256, size_bytes, description, labels, inputs, outputs, created_at"
)


def _row_to_record(row: sqlite3.Row) -> ModelRecord:
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
    )


def _check_version(version: int) -> None:
    if version < 0:
        raise InvalidArgument(f"version must be >= 0 (0 means latest), got {version}")


class SqliteRepository(
    SqliteDatasets, SqliteJobs, SqliteVariants, SqliteDeployments, ModelRepository
):
    """Models, datasets, jobs with their events, and variants, in one database file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path,
            isolation_level=None,  # explicit BEGIN/COMMIT only
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )
        self._conn.row_factory = sqlite3.Row
        self._configure()
        self._migrate()

    def _configure(self) -> None:
        mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise FailedPrecondition(f"SQLite database {self.path} cannot use WAL (got {mode})")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def _migrate(self) -> None:
        with self._tx() as c:
            current = c.execute("PRAGMA user_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise FailedPrecondition(
                    f"database {self.path} has schema version {current}, newer than the "
                    f"{SCHEMA_VERSION} this version of Pareto understands"
                )
            for version in range(current, SCHEMA_VERSION):
                for statement in _MIGRATIONS[version]:
                    c.execute(statement)
            c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, serialised in-process by the lock and across
        processes by BEGIN IMMEDIATE."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # -- ModelRepository -------------------------------------------------------------

    def add_model(self, record: ModelRecord, new_version: bool) -> ModelRecord:
        if record.format not in FORMATS:
            raise InvalidArgument(
                f"format must be one of {', '.join(FORMATS)}, got {record.format!r}"
            )
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
                f"INSERT INTO models ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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

    def delete_model(self, name: str, version: int = 0) -> list[ModelRecord]:
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
            if version == 0:
                c.execute("DELETE FROM models WHERE name = ?", (name,))
            else:
                c.execute("DELETE FROM models WHERE name = ? AND version = ?", (name, version))
            if len(doomed) == len(rows):  # the name is gone: a fresh upload starts at 1
                c.execute("DELETE FROM model_names WHERE name = ?", (name,))
        return [_row_to_record(r) for r in doomed]

    def name_exists(self, name: str) -> bool:
        return bool(self._query("SELECT 1 FROM models WHERE name = ? LIMIT 1", (name,)))

    def referenced_blobs(self) -> set[str]:
        """Blobs of models, datasets and variants: garbage collection keeps all of them."""
        rows = self._query(
            "SELECT sha256 FROM models UNION SELECT sha256 FROM datasets "
            "UNION SELECT sha256 FROM variants"
        )
        return {r[0] for r in rows}

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def already_exists_message(name: str, latest_version: int) -> str:
    return (
        f"model {name!r} already exists (latest version {latest_version}); upload with "
        f"new_version=true to add it as version {latest_version + 1}"
    )
