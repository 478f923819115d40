"""What the SQL mixins need from a backend: a connection and a few dialect hooks.

The mixins (`sqlite_datasets`, `sqlite_jobs`, `sqlite_job_leases`, `sqlite_variants`,
`sqlite_deployments`, `sql_models`) hold the SQL once, written with `?` placeholders, and
run it on whatever `_tx()` yields: a `sqlite3.Connection` for `SqliteRepository`, a
`PgConnection` (which turns `?` into `%s`) for `PostgresRepository`. Rows are read by
column name and by position, as `sqlite3.Row` allows.

Where the two SQL dialects differ, the mixins use the backend's hooks:

- `_row_lock`: appended to a SELECT whose rows the transaction then writes back
  ("" in SQLite, where BEGIN IMMEDIATE already holds the one write lock; " FOR UPDATE"
  in PostgreSQL).
- `_claim_lock`: appended to the SELECT that claims a queued job (" FOR UPDATE SKIP
  LOCKED" in PostgreSQL: concurrent claimers skip each other's row instead of waiting).
- `_clock(c)`: the time used for leases. PostgreSQL's clock, so replicas with skewed
  clocks still agree on when a lease expired; Python's in SQLite (one machine).
- `_tx(serialized=False)`: a transaction that does not need the backend-wide write lock
  (claiming and heartbeats, which only touch rows they lock themselves).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol


class Cursor(Protocol):
    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...


class Backend(Protocol):
    """The hooks a mixin may call (declared on each mixin for type checkers)."""

    _row_lock: str
    _claim_lock: str

    def _tx(self, serialized: bool = True) -> AbstractContextManager[Connection]: ...

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    def _clock(self, c: Connection) -> datetime: ...
