"""ServableResolver's cache: reused while fresh, dropped by any write through the same
repository, bounded, and never caching a miss."""

from __future__ import annotations

import pytest

from pareto_core.errors import NotFound
from pareto_core.tensors import Signature, TensorSpec
from service.serving.servables import ServableResolver
from service.store.records import ModelRecord
from service.store.sqlite_repository import SqliteRepository

SIGNATURE = Signature((TensorSpec("x", "FP32", (-1, 4)),), (TensorSpec("y", "FP32", (-1, 2)),))


def record(name: str, sha: str = "a") -> ModelRecord:
    return ModelRecord(name, 0, "onnx", sha * 64, 10, SIGNATURE)


@pytest.fixture
def repo(tmp_path) -> SqliteRepository:
    repo = SqliteRepository(tmp_path / "metadata.db")
    yield repo
    repo.close()


def test_a_local_upload_is_seen_at_once(repo):
    resolver = ServableResolver(repo, cache_s=60)
    repo.add_model(record("m"), new_version=False)
    assert resolver.resolve("m").version == "1"
    repo.add_model(record("m", "b"), new_version=True)
    assert resolver.resolve("m").version == "2"


def test_another_processes_write_is_seen_after_the_cache_time(tmp_path, repo):
    other = SqliteRepository(tmp_path / "metadata.db")  # another replica, same database
    repo.add_model(record("m"), new_version=False)
    cached = ServableResolver(repo, cache_s=60)
    uncached = ServableResolver(repo, cache_s=0)
    assert cached.resolve("m").version == uncached.resolve("m").version == "1"
    other.add_model(record("m", "b"), new_version=True)
    assert cached.resolve("m").version == "1"  # within cache_s
    assert uncached.resolve("m").version == "2"
    other.close()


def test_misses_are_not_cached(repo):
    resolver = ServableResolver(repo, cache_s=60)
    with pytest.raises(NotFound):
        resolver.resolve("late")
    repo.add_model(record("late"), new_version=False)
    assert resolver.resolve("late").model == "late"


def test_a_local_delete_is_seen_at_once(repo):
    resolver = ServableResolver(repo, cache_s=60)
    repo.add_model(record("m"), new_version=False)
    resolver.resolve("m")
    repo.delete_model("m")
    with pytest.raises(NotFound):
        resolver.resolve("m")
