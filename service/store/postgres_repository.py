"""`PostgresRepository`: the metadata in PostgreSQL, shared by several gateway replicas.

Same behaviour as `SqliteRepository`, from the same SQL: the mixins run on a psycopg 3
connection wrapped by `PgConnection` (`?` placeholders, rows readable by name and
position). Connections come from a pool (the server is multi-threaded; each call takes
one for one statement or one transaction and gives it back).

Transactions. SQLite's BEGIN IMMEDIATE makes every write transaction exclusive, and the
mixins rely on it for their check-then-insert steps: the next model version
(`model_names`), an event's sequence number (MAX + 1), "the dataset still exists" when a
job is created, "no active job uses it" when a dataset is deleted, the queue bound. Under
PostgreSQL's READ COMMITTED two replicas could both pass such a check, so `_tx()` takes one
transaction-scoped advisory lock (`pg_advisory_xact_lock`) first: writes are serialized
across replicas exactly as they are across processes on one SQLite file, and the lock is
released by COMMIT or ROLLBACK, even when a replica dies mid-transaction. They are short
(metadata rows, never blobs), so one lock costs little. Reads take no lock.

Only the hot job paths skip it (`_tx(serialized=False)`): claiming takes the oldest QUEUED
row with FOR UPDATE SKIP LOCKED, so concurrent claimers never wait for or take the same
job, and heartbeats update rows they lock; every read-then-write of a job row inside a
serialized transaction locks the row (FOR UPDATE), so it cannot interleave with those.

psycopg and psycopg_pool are imported here only; nothing imports this module unless
PARETO_DATABASE_URL names a PostgreSQL server.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from pareto_core.errors import FailedPrecondition, Unavailable
from service.store.interfaces import Repository
from service.store.postgres_connection import (
    PgConnection,
    check_url,
    describe_error,
    redact,
    row_factory,
    to_pyformat,
)
from service.store.postgres_schema import WRITE_LOCK_KEY, migrate
from service.store.sql_datasets import SqlDatasets
from service.store.sql_deployments import SqlDeployments
from service.store.sql_job_leases import SqlJobLeases
from service.store.sql_jobs import SqlJobs
from service.store.sql_models import SqlModels
from service.store.sql_searches import SqlSearches
from service.store.sql_serving_configs import SqlServingConfigs
from service.store.sql_variants import SqlVariants
from service.store.sqlite_schema import SCHEMA_VERSION

log = logging.getLogger(__name__)

DEFAULT_POOL_SIZE = 10  # connections per process, opened on demand (one kept open)
CONNECT_TIMEOUT_S = 10


class PostgresRepository(
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
    """Models, datasets, jobs with their events, variants and deployments, in PostgreSQL."""

    shared = True  # several replicas use it (and the blob volume) at once
    _row_lock = " FOR UPDATE"
    _claim_lock = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        self._url = check_url(url)
        self.where = redact(url)
        self._migrate()
        self._pool = ConnectionPool(
            self._url,
            min_size=1,
            max_size=pool_size,
            kwargs={
                "autocommit": True,
                "row_factory": row_factory,
                "connect_timeout": CONNECT_TIMEOUT_S,
            },
            check=ConnectionPool.check_connection,  # a server restart leaves dead ones
            name="pareto-metadata",
            open=True,
        )

    def _migrate(self) -> None:
        """Connect once, directly: a wrong URL or a server that is down is a clear error at
        start (naming the URL without its password), not a pool timeout later."""
        try:
            with (
                psycopg.connect(
                    self._url,
                    autocommit=True,
                    row_factory=row_factory,
                    connect_timeout=CONNECT_TIMEOUT_S,
                ) as conn,
                conn.transaction(),
            ):
                found = migrate(PgConnection(conn), self.where)
        except psycopg.Error as exc:
            raise FailedPrecondition(
                f"cannot use the metadata database {self.where}: {describe_error(exc, self._url)}"
            ) from None
        if found < SCHEMA_VERSION:
            log.info("metadata database %s: schema %d -> %d", self.where, found, SCHEMA_VERSION)

    @contextmanager
    def _unavailable(self) -> Iterator[None]:
        """A lost server, a dead connection, a deadlock victim: UNAVAILABLE (retry)."""
        try:
            yield
        except psycopg.OperationalError as exc:
            message = describe_error(exc, self._url)
            raise Unavailable(f"metadata database {self.where}: {message}") from exc

    @contextmanager
    def _tx(self, serialized: bool = True) -> Iterator[PgConnection]:
        """One transaction; `serialized` (the default) holds the write lock (see above)."""
        with self._unavailable(), self._pool.connection() as conn, conn.transaction():
            if serialized:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))
            self._check_fence(PgConnection(conn))
            yield PgConnection(conn)
        self.write_generation += 1

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._unavailable(), self._pool.connection() as conn:
            return conn.execute(to_pyformat(sql), tuple(params)).fetchall()

    def _clock(self, c: PgConnection) -> datetime:
        """The server's time: every replica measures leases on the same clock."""
        return c.execute("SELECT statement_timestamp()").fetchone()[0]

    def close(self) -> None:
        self._pool.close()
