"""The PostgreSQL schema: the SQLite migrations of `sqlite_schema.py`, translated.

Migrations are numbered and forward-only, like Alembic's revisions (this is the
Alembic-equivalent for one linear history, without the dependency): `schema_version`
records each applied number with its time, the highest is the database's version. They
run in one transaction under an advisory lock, so replicas that start together do not
race: the first applies what is missing, the others wait and then find nothing to do. A
database whose version is newer than this code is refused, as in SQLite.

The DDL is derived from the SQLite statements, so the two schemas cannot drift: SQLite's
INTEGER is 64-bit, hence BIGINT (a model's size exceeds 2^31); an `INTEGER PRIMARY KEY`
(SQLite's rowid alias: `seq`, `models.id`) becomes a BIGINT identity; REAL becomes DOUBLE
PRECISION. Timestamps and JSON stay TEXT, written by the one codec (`sqlite_codec.py`).
A future step that cannot be translated this way goes into `OVERRIDES`.
"""

from __future__ import annotations

import re

from pareto_core.errors import FailedPrecondition
from service.store.sql_codec import now, time_to_text
from service.store.sql_types import Connection
from service.store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION

# pg_advisory_xact_lock keys ("PARETO" + a small number; any other user of advisory
# locks on the same database must avoid them).
MIGRATION_LOCK_KEY = 0x504152455430_01
WRITE_LOCK_KEY = 0x504152455430_02

# (version index, statement index) -> PostgreSQL statement, where translation is not enough.
OVERRIDES: dict[tuple[int, int], str] = {}

_TRANSLATIONS = (
    (re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\b"), "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
)


def to_postgres(statement: str) -> str:
    for pattern, replacement in _TRANSLATIONS:
        statement = pattern.sub(replacement, statement)
    return statement


POSTGRES_MIGRATIONS: tuple[tuple[str, ...], ...] = tuple(
    tuple(OVERRIDES.get((v, i), to_postgres(s)) for i, s in enumerate(step))
    for v, step in enumerate(MIGRATIONS)
)

_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY,
    applied_at TEXT    NOT NULL
)"""


def schema_version(c: Connection) -> int:
    return c.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]


def migrate(c: Connection, where: str) -> int:
    """Bring the database up to SCHEMA_VERSION; `c` must be inside a transaction. Returns
    the version found before. `where` (the URL without password) names it in errors."""
    c.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK_KEY,))
    c.execute(_VERSION_TABLE)
    current = schema_version(c)
    if current > SCHEMA_VERSION:
        raise FailedPrecondition(
            f"database {where} has schema version {current}, newer than the "
            f"{SCHEMA_VERSION} this version of Pareto understands"
        )
    for version in range(current, SCHEMA_VERSION):
        for statement in POSTGRES_MIGRATIONS[version]:
            c.execute(statement)
        c.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
            (version + 1, time_to_text(now())),
        )
    return current
