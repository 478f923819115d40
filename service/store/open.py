"""The one place that picks the metadata backend: `open_repository`.

PARETO_DATABASE_URL empty (the default): embedded SQLite at `<data dir>/metadata.db`, one
process per data dir. `postgresql://user:password@host:port/database`: PostgreSQL, which
several replicas share together with one blob volume (the data dir on a ReadWriteMany
volume). The server and its job workers all open the store through here.
"""

from __future__ import annotations

from pathlib import Path

from pareto_core.errors import FailedPrecondition
from service.settings import Settings
from service.store.interfaces import Repository
from service.store.sqlite_repository import SqliteRepository

# With a shared blob volume, start-up clean-up must not take what another live replica is
# still writing: staging entries and unreferenced blobs are removed only once older than
# the longest a job may run (PARETO_JOB_TIMEOUT_S) plus this margin.
SHARED_ORPHAN_MARGIN_S = 3600.0


def database_url(settings: Settings) -> str:
    return settings.database_url.get_secret_value()


def open_repository(
    settings_or_url: Settings | str, data_dir: Path | str | None = None
) -> Repository:
    """The repository the settings (or a database URL) name; `data_dir` holds the SQLite
    file (default: the settings' data dir). Raises FailedPrecondition for a bad URL, an
    unreachable server or a schema newer than this code (the URL shown without password)."""
    if isinstance(settings_or_url, Settings):
        url = database_url(settings_or_url)
        data_dir = settings_or_url.data_dir if data_dir is None else data_dir
        check_one_backend(Path(data_dir), bool(url))
    else:
        url = settings_or_url
    if not url:
        if data_dir is None:
            raise ValueError("open_repository: SQLite needs the data dir")
        return SqliteRepository(Path(data_dir) / "metadata.db")
    from service.store.postgres_repository import PostgresRepository

    return PostgresRepository(url)


def check_one_backend(data_dir: Path, shared: bool) -> None:
    """A data dir's blobs are known to one metadata store only: the other one's start-up
    clean-up would take them for orphans and remove them. So a replica refuses a data dir
    the other backend has used (moving a store between backends is not automated)."""
    if shared and (data_dir / "metadata.db").exists():
        raise FailedPrecondition(
            f"data dir {data_dir} holds the embedded SQLite store (metadata.db), whose "
            "blobs PostgreSQL does not know; use another data dir with PARETO_DATABASE_URL"
        )
    if not shared and (data_dir / "replicas").is_dir():
        raise FailedPrecondition(
            f"data dir {data_dir} belongs to a cluster (replicas/): set its "
            "PARETO_DATABASE_URL, or use another data dir for the embedded SQLite store"
        )


def is_shared(settings: Settings) -> bool:
    """Whether other replicas may use the same data dir and database at once."""
    return bool(database_url(settings))


def lock_dir(settings: Settings) -> Path:
    """What `DataDirLock` locks: the whole data dir for SQLite (one process); with a shared
    database, this replica's own dir under it, so two processes with one PARETO_REPLICA_ID
    (which would take each other's jobs back at start) cannot run at once."""
    if not is_shared(settings):
        return settings.data_dir
    return settings.data_dir / "replicas" / settings.replica_id


def orphan_grace_s(settings: Settings) -> float:
    """How old an unreferenced blob or staging entry must be before start-up removes it."""
    return settings.job_timeout_s + SHARED_ORPHAN_MARGIN_S if is_shared(settings) else 0.0
