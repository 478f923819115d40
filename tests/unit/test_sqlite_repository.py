"""The model repository against a real SQLite file and a real PostgreSQL database (the
`repo` tests run on both backends; the PRAGMA ones are SQLite's own)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest

from pareto_core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from pareto_core.tensors import Signature, TensorSpec
from service.store.records import ModelRecord
from service.store.sqlite_repository import SCHEMA_VERSION, SqliteRepository
from tests.helpers.store_backends import BACKENDS, StoreBackend, store_backend

SIG = Signature(
    inputs=(TensorSpec("x", "FP32", (-1, 3)),),
    outputs=(TensorSpec("y", "INT64", (-1,)),),
)


def record(name: str = "resnet", sha: str = "a" * 64, **kw) -> ModelRecord:
    return ModelRecord(name, 0, "onnx", sha, 123, SIG, **kw)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreBackend]:
    yield from store_backend(request, tmp_path)


@pytest.fixture
def repo(backend: StoreBackend):
    return backend.open()


def test_add_and_get_round_trip(repo):
    stored = repo.add_model(record(description="d", labels={"team": "vision"}), False)
    assert stored.version == 1
    assert stored.created_at is not None and stored.created_at.tzinfo == UTC
    assert repo.get_model("resnet") == stored
    assert repo.get_model("resnet", 1).signature == SIG
    assert repo.get_model("resnet").labels == {"team": "vision"}


def test_duplicate_name_needs_new_version(repo):
    repo.add_model(record(), False)
    with pytest.raises(AlreadyExists, match=r"latest version 1.*new_version=true.*version 2"):
        repo.add_model(record(sha="b" * 64), False)
    assert [m.version for m in repo.list_models()] == [1]
    assert repo.add_model(record(sha="b" * 64), True).version == 2
    assert repo.get_model("resnet").sha256 == "b" * 64
    assert repo.get_model("resnet", 1).sha256 == "a" * 64


def test_new_version_on_a_fresh_name_is_version_1(repo):
    assert repo.add_model(record(), True).version == 1


def test_versions_are_not_reused_while_the_name_exists(repo):
    for _ in range(2):
        repo.add_model(record(), True)
    repo.delete_model("resnet", 2)
    assert repo.add_model(record(), True).version == 3
    repo.delete_model("resnet")
    assert repo.add_model(record(), False).version == 1  # the name was gone


def test_not_found_messages(repo):
    with pytest.raises(NotFound, match="model 'nope' not found"):
        repo.get_model("nope")
    repo.add_model(record(), False)
    with pytest.raises(NotFound, match=r"no version 7 \(versions: 1\)"):
        repo.get_model("resnet", 7)
    with pytest.raises(NotFound, match="no version 7"):
        repo.delete_model("resnet", 7)
    with pytest.raises(NotFound, match="'nope' not found"):
        repo.delete_model("nope")
    with pytest.raises(InvalidArgument, match="version must be >= 0"):
        repo.get_model("resnet", -1)


def test_list_ordered_and_filtered_by_labels(repo):
    repo.add_model(record("b", labels={"team": "nlp"}), False)
    repo.add_model(record("a", labels={"team": "vision", "tier": "gold"}), False)
    repo.add_model(record("a", labels={"team": "vision"}), True)
    assert [(m.name, m.version) for m in repo.list_models()] == [("a", 1), ("a", 2), ("b", 1)]
    assert [(m.name, m.version) for m in repo.list_models({"team": "vision"})] == [
        ("a", 1),
        ("a", 2),
    ]
    assert [m.version for m in repo.list_models({"team": "vision", "tier": "gold"})] == [1]
    assert repo.list_models({"team": "none"}) == []


def test_delete_one_version_or_all(repo):
    for sha in ("a" * 64, "b" * 64, "c" * 64):
        repo.add_model(record(sha=sha), True)
    deleted = repo.delete_model("resnet", 2)
    assert [(m.version, m.sha256) for m in deleted] == [(2, "b" * 64)]
    assert repo.referenced_blobs() == {"a" * 64, "c" * 64}
    assert [m.version for m in repo.delete_model("resnet")] == [1, 3]
    assert not repo.name_exists("resnet")
    assert repo.referenced_blobs() == set()


def test_name_exists_and_referenced_blobs_shared(repo):
    assert not repo.name_exists("x")
    repo.add_model(record("x"), False)
    repo.add_model(record("y"), False)  # same content under two names
    assert repo.name_exists("x")
    assert repo.referenced_blobs() == {"a" * 64}


def test_invalid_format_rejected(repo):
    bad = ModelRecord("m", 0, "pickle", "a" * 64, 1, SIG)
    with pytest.raises(InvalidArgument, match="format must be one of"):
        repo.add_model(bad, False)


def test_schema_wal_and_persistence(tmp_path):
    path = tmp_path / "meta.db"
    repo = SqliteRepository(path)
    repo.add_model(record(), False)
    repo.close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()
    reopened = SqliteRepository(path)
    assert reopened.get_model("resnet").version == 1
    reopened.close()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "meta.db"
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(FailedPrecondition, match="newer than"):
        SqliteRepository(path)


def test_concurrent_new_versions_get_distinct_numbers(repo):
    errors: list[BaseException] = []

    def add() -> None:
        try:
            for _ in range(5):
                repo.add_model(record(), True)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=add) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [m.version for m in repo.list_models()] == list(range(1, 21))


def test_two_connections_to_one_database_do_not_duplicate_versions(backend):
    a, b = backend.open(), backend.open()
    a.add_model(record(), False)
    with pytest.raises(AlreadyExists):
        b.add_model(record(), False)
    assert b.add_model(record(), True).version == 2
    assert a.get_model("resnet").version == 2


def test_two_replicas_adding_versions_at_once_get_distinct_numbers(backend):
    """Check-then-insert of the next version across processes: BEGIN IMMEDIATE in SQLite,
    the advisory write lock in PostgreSQL."""
    replicas = [backend.open() for _ in range(3)]
    start = threading.Barrier(len(replicas))

    def add(r) -> None:
        start.wait()
        for _ in range(5):
            r.add_model(record(), True)

    threads = [threading.Thread(target=add, args=(r,)) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [m.version for m in replicas[0].list_models()] == list(range(1, 16))


def test_sizes_beyond_32_bits_round_trip(repo):
    big = ModelRecord("big", 0, "onnx", "a" * 64, 5 * 1024**3, SIG)
    assert repo.add_model(big, False).size_bytes == repo.get_model("big").size_bytes == 5 * 1024**3
