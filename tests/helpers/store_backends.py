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
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pareto_core.tensors import Signature, TensorSpec
from service.store.deployment_records import DeploymentRecord
from service.store.records import JobRecord, ModelRecord, RecipeSpec, VariantRecord
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


_SIGNATURE = Signature((TensorSpec("x", "FP32", (-1, 3)),), (TensorSpec("y", "FP32", (-1, 2)),))


def ensure_model(repo: Any, name: str, version: int = 1) -> None:
    """Store a placeholder model `name` up to `version` unless there is one: the store
    refuses jobs and deployments for a model it does not hold."""
    while not repo.name_exists(name) or repo.get_model(name).version < version:
        sha = hashlib.sha256(f"{name}-{version}".encode()).hexdigest()
        repo.add_model(ModelRecord(name, 0, "onnx", sha, 1, _SIGNATURE), True)


def create_job(repo: Any, job: JobRecord, **kwargs: Any) -> JobRecord:
    """`repo.create_job` for a job whose model the test did not store itself."""
    ensure_model(repo, job.model, job.model_version)
    return repo.create_job(job, **kwargs)


def add_deployment(repo: Any, record: DeploymentRecord) -> DeploymentRecord:
    """`repo.add_deployment` with its model and the variants it targets stored first."""
    ensure_model(repo, record.model)
    for target in record.targets:
        version = target.model_version
        if version.isdigit():
            ensure_model(repo, record.model, int(version))
        elif not any(v.id == version for v in repo.list_variants(record.model)):
            repo.add_variant(placeholder_variant(version, record.model))
    return repo.add_deployment(record)


def placeholder_variant(variant_id: str, model: str) -> VariantRecord:
    sha = hashlib.sha256(variant_id.encode()).hexdigest()
    return VariantRecord(
        id=variant_id,
        parent_model=model,
        parent_version=1,
        job_id="job-000000",
        recipe=RecipeSpec("r", ()),
        format="onnx",
        sha256=sha,
        size_bytes=1,
        signature=_SIGNATURE,
        metrics={},
        parent_metrics={},
        budget_ok=True,
    )
