"""What is PostgreSQL's own: its migrations (schema_version, advisory lock, newer schema
refused), clear errors for bad or unreachable URLs without the password, the psycopg
adapter, and connections that the server dropped. Against a real server (see
tests/helpers/postgres_server.py); the behaviour shared with SQLite is tested on both
backends in test_sqlite_*.py and test_job_leases.py."""

from __future__ import annotations

import threading

import psycopg
import pytest

from pareto_core.errors import FailedPrecondition
from service.settings import Settings
from service.store.open import lock_dir, open_repository, orphan_grace_s
from service.store.postgres_connection import Row, redact, to_pyformat
from service.store.postgres_repository import PostgresRepository
from service.store.postgres_schema import POSTGRES_MIGRATIONS, to_postgres
from service.store.sqlite_repository import SCHEMA_VERSION, SqliteRepository
from tests.helpers.postgres_server import free_port


def column_types(url: str, table: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name, data_type, is_identity FROM information_schema.columns "
            "WHERE table_name = %s",
            (table,),
        ).fetchall()
    return {
        name: f"{kind}{' identity' if identity == 'YES' else ''}" for name, kind, identity in rows
    }


def versions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY 1")]


def test_migrations_are_recorded_once_and_reopening_changes_nothing(postgres_url):
    PostgresRepository(postgres_url).close()
    assert versions(postgres_url) == list(range(1, SCHEMA_VERSION + 1))
    PostgresRepository(postgres_url).close()
    assert versions(postgres_url) == list(range(1, SCHEMA_VERSION + 1))
    jobs = column_types(postgres_url, "jobs")
    assert jobs["seq"] == "bigint identity" and jobs["percent"] == "double precision"
    assert jobs["owner"] == "text" and jobs["heartbeat_at"] == "text"
    assert column_types(postgres_url, "models")["size_bytes"] == "bigint"


def test_replicas_starting_together_migrate_once(postgres_url):
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_one() -> None:
        try:
            start.wait()
            PostgresRepository(postgres_url).close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert versions(postgres_url) == list(range(1, SCHEMA_VERSION + 1))


def test_a_newer_schema_is_refused(postgres_url):
    PostgresRepository(postgres_url).close()
    with psycopg.connect(postgres_url) as conn:
        conn.execute("INSERT INTO schema_version VALUES (%s, 'later')", (SCHEMA_VERSION + 1,))
    with pytest.raises(FailedPrecondition, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        PostgresRepository(postgres_url)


@pytest.mark.parametrize(
    ("url", "pattern"),
    [
        ("mysql://pareto:s3cret-pw@db:3306/pareto", "unsupported scheme 'mysql'"),
        ("postgresql://pareto:s3cret-pw@db:5432", "names no database"),
        ("postgresql://pareto:s3cret-pw@db:99999/pareto", "is not valid"),
        ("postgresql://pareto:s3cret-pw@127.0.0.1:{port}/pareto", "cannot use the metadata"),
    ],
)
def test_bad_or_unreachable_urls_fail_at_start_without_the_password(url, pattern):
    url = url.format(port=free_port())
    with pytest.raises(FailedPrecondition, match=pattern) as caught:
        open_repository(url)
    message = str(caught.value)
    assert "s3cret-pw" not in message and "pareto:***@" in message


def test_the_settings_pick_the_backend_and_the_cluster_layout(tmp_path, postgres_url):
    embedded = Settings(data_dir=tmp_path, replica_id="pod-a")
    repo = open_repository(embedded)
    assert isinstance(repo, SqliteRepository) and repo.path == tmp_path / "metadata.db"
    repo.close()
    assert (lock_dir(embedded), orphan_grace_s(embedded)) == (tmp_path, 0.0)

    with pytest.raises(FailedPrecondition, match="holds the embedded SQLite store"):
        open_repository(Settings(data_dir=tmp_path, database_url=postgres_url))

    cluster_dir = tmp_path / "cluster"
    shared = Settings(data_dir=cluster_dir, replica_id="pod-a", database_url=postgres_url)
    repo = open_repository(shared)
    assert isinstance(repo, PostgresRepository) and repo.shared
    repo.close()
    assert lock_dir(shared) == cluster_dir / "replicas" / "pod-a"
    assert orphan_grace_s(shared) > shared.job_timeout_s
    lock_dir(shared).mkdir(parents=True)  # what the server's data dir lock does
    with pytest.raises(FailedPrecondition, match="belongs to a cluster"):
        open_repository(Settings(data_dir=cluster_dir))


def test_connections_the_server_dropped_are_replaced(postgres_url, postgres_server):
    repo = PostgresRepository(postgres_url)
    try:
        assert repo.list_models() == []
        database = postgres_url.rsplit("/", 1)[1]
        postgres_server.admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        )
        assert repo.list_models() == []  # a fresh connection, not an error
    finally:
        repo.close()


def test_the_adapter_speaks_sqlite3s_dialect_to_psycopg():
    assert to_pyformat("SELECT a FROM t WHERE b = ? AND c LIKE '%?%'") == (
        "SELECT a FROM t WHERE b = %s AND c LIKE '%%?%%'"
    )
    row = Row((1, "x"))
    row._names = {"id": 0, "name": 1}
    assert (row["name"], row[0], tuple(row), row.keys()) == ("x", 1, (1, "x"), ["id", "name"])
    assert redact("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("postgresql://h/db") == "postgresql://h/db"


def test_the_ddl_is_translated_from_sqlites():
    assert to_postgres("seq INTEGER PRIMARY KEY, n INTEGER, p REAL") == (
        "seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n BIGINT, p DOUBLE PRECISION"
    )
    assert len(POSTGRES_MIGRATIONS) == SCHEMA_VERSION
