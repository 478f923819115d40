"""`SqliteRepository`: the metadata over SQLite (stdlib sqlite3), the embedded default.

One connection, guarded by a lock, serves every thread. WAL + synchronous=FULL make each
committed transaction durable; writes use BEGIN IMMEDIATE so check-then-insert (such as
picking the next version) cannot race, even with another process on the same file.

The schema is versioned with PRAGMA user_version (`sqlite_schema.py`). The tables are
served by mixins, one file each, whose SQL `PostgresRepository` shares: `SqlModels`,
`SqlDatasets`, `SqlJobs`, `SqlJobLeases`, `SqlVariants`, `SqlDeployments`;
they use this class's `_tx`, `_query` and dialect hooks (see `sql_types.py`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from pareto_core.errors import FailedPrecondition
from service.store.interfaces import Repository
from service.store.sql_codec import now
from service.store.sql_datasets import SqlDatasets
from service.store.sql_deployments import SqlDeployments
from service.store.sql_job_leases import SqlJobLeases
from service.store.sql_jobs import SqlJobs
from service.store.sql_models import SqlModels, already_exists_message
from service.store.sql_searches import SqlSearches
from service.store.sql_serving_configs import SqlServingConfigs
from service.store.sql_variants import SqlVariants
from service.store.sqlite_schema import MIGRATIONS as _MIGRATIONS
from service.store.sqlite_schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "_MIGRATIONS", "SqliteRepository", "already_exists_message"]

BUSY_TIMEOUT_MS = 10_000


class SqliteRepository(
    SqlDatasets,
    SqlJobs,
    SqlJobLeases,
    SqlVariants,
    SqlDeployments,
    SqlSearches,
    SqlModels,
    SqlServingConfigs,
    Repository,
):
    """Models, datasets, jobs with their events, variants and deployments, in one file."""

    shared = False  # one machine: the data dir (and its lock) belongs to one process
    _row_lock = ""  # BEGIN IMMEDIATE already holds the database's one write lock
    _claim_lock = ""

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
    def _tx(self, serialized: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction, serialised in-process by the lock and across
        processes by BEGIN IMMEDIATE (always: `serialized` matters to PostgreSQL only)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._check_fence(self._conn)
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            self.write_generation += 1

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _clock(self, c: sqlite3.Connection) -> datetime:
        return now()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
