"""A data dir shared by replicas (README "Running a cluster"): start-up clean-up spares what
another live replica may still be writing, one replica id runs once, and the job worker
gets the database URL."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path

import pytest

from pareto_core.errors import FailedPrecondition
from service.jobs.spawn import worker_env
from service.settings import Settings, SettingsError, load_settings
from service.store.blobs import BlobStore
from service.store.datadir import DataDirLock
from service.store.open import lock_dir

GRACE_S = 600.0
URL = "postgresql://pareto:s3cret@db:5432/pareto"


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def commit(blobs: BlobStore, data: bytes) -> str:
    staging = blobs.new_staging_path()
    staging.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    blobs.commit(staging, sha)
    return sha


def test_staging_entries_are_removed_only_once_older_than_the_grace(tmp_path):
    blobs = BlobStore(tmp_path, orphan_grace_s=GRACE_S)
    live, abandoned = blobs.new_staging_path(), blobs.new_staging_path()
    live.write_bytes(b"an upload another replica is receiving")
    abandoned.mkdir()
    age(abandoned, 2 * GRACE_S)
    blobs.clean_staging()
    assert live.exists() and not abandoned.exists()
    BlobStore(tmp_path).clean_staging()  # no grace: one process owns the store
    assert not live.exists()


def test_unreferenced_blobs_are_collected_only_once_older_than_the_grace(tmp_path):
    blobs = BlobStore(tmp_path, orphan_grace_s=GRACE_S)
    fresh, old, kept = (commit(blobs, data) for data in (b"fresh", b"old", b"kept"))
    for sha in (old, kept):
        age(blobs.path(sha), 2 * GRACE_S)
    assert blobs.garbage_collect({kept}) == [old]
    assert blobs.exists(fresh) and blobs.exists(kept)


def test_committing_content_that_exists_refreshes_it(tmp_path):
    """Another replica's upload of the same bytes is about to refer to the old blob."""
    blobs = BlobStore(tmp_path, orphan_grace_s=GRACE_S)
    sha = commit(blobs, b"same")
    age(blobs.path(sha), 2 * GRACE_S)
    assert commit(blobs, b"same") == sha
    assert blobs.garbage_collect(set()) == []


def test_one_replica_id_runs_once_on_a_shared_data_dir(tmp_path):
    a = Settings(data_dir=tmp_path, database_url=URL, replica_id="pod-a")
    b = Settings(data_dir=tmp_path, database_url=URL, replica_id="pod-b")
    locks = [DataDirLock(lock_dir(a)), DataDirLock(lock_dir(b))]
    for lock in locks:
        lock.acquire()  # two replicas on one data dir
    try:
        with pytest.raises(FailedPrecondition, match="in use"):
            DataDirLock(lock_dir(a)).acquire()
    finally:
        for lock in locks:
            lock.release()


def test_the_worker_gets_the_database_url_and_settings_hide_it(tmp_path):
    settings = Settings(data_dir=tmp_path, database_url=URL)
    assert worker_env(settings)["PARETO_DATABASE_URL"] == URL
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())


def test_replica_ids_default_to_the_host_name_and_must_be_names(monkeypatch):
    assert Settings().replica_id == socket.gethostname()
    monkeypatch.setenv("PARETO_REPLICA_ID", "../etc")
    with pytest.raises(SettingsError, match="PARETO_REPLICA_ID"):
        load_settings()
