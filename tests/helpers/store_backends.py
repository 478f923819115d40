"""Both metadata backends for the repository contract tests.

A test module defines

    @pytest.fixture(params=BACKENDS)
    def backend(request, tmp_path):
        yield from store_backend(request, tmp_path)

and every test taking `backend` (or a `repo` fixture built on it) runs against SQLite (a
file in tmp_path) and PostgreSQL (a fresh database on the session's real server, see
tests/helpers/postgres_server.py). `backend.open()` opens one more repository on the same
database: another process, or another replica.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from service.store.sqlite_repository import SqliteRepository

BACKENDS = ("sqlite", "postgres")


@dataclass
class StoreBackend:
    name: str
    opener: Callable[[], Any]
    opened: list[Any] = field(default_factory=list)

    def open(self) -> Any:
        repo = self.opener()
        self.opened.append(repo)
        return repo

    def close_all(self) -> None:
        for repo in self.opened:
            with contextlib.suppress(Exception):
                repo.close()


def store_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreBackend]:
    if request.param == "sqlite":
        backend = StoreBackend("sqlite", lambda: SqliteRepository(tmp_path / "meta.db"))
    else:
        from service.store.postgres_repository import PostgresRepository

        url = request.getfixturevalue("postgres_url")
        backend = StoreBackend("postgres", lambda: PostgresRepository(url))
    try:
        yield backend
    finally:
        backend.close_all()
