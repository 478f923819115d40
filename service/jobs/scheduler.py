"""Runs queued jobs in worker processes (being written)."""

from __future__ import annotations

from service.settings import Settings
from service.store.sqlite_repository import SqliteRepository


class JobScheduler:
    def __init__(self, repo: SqliteRepository, settings: Settings) -> None:
        self._repo = repo
        self._settings = settings

    def start(self) -> None:
        """Recover interrupted jobs, then start dispatching queued ones."""

    def wake(self) -> None:
        """A job was queued: dispatch without waiting for the next poll."""

    def cancel(self, job_id: str) -> None:
        """Stop the job's worker if it runs."""

    def stop(self, grace: float = 5.0) -> None:
        """Stop dispatching; stop running workers (their jobs are re-queued at restart)."""
