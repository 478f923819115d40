"""The content-addressed blob store on a real temporary directory."""

from __future__ import annotations

import hashlib
import io
import stat
import zipfile
from pathlib import Path

import pytest

from pareto_core.errors import InvalidArgument, NotFound
from service.store.blobs import BlobStore


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "store")


def stage(blobs: BlobStore, data: bytes) -> tuple[Path, str]:
    path = blobs.new_staging_path()
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_commit_moves_staging_into_content_address(blobs):
    staging, sha = stage(blobs, b"model bytes")
    path = blobs.commit(staging, sha)
    assert path == blobs.root / "blobs" / sha[:2] / sha
    assert path.read_bytes() == b"model bytes"
    assert not staging.exists()
    assert blobs.exists(sha) and blobs.path(sha) == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o444  # committed blobs are read-only
    assert list((blobs.root / "tmp").iterdir()) == []


def test_commit_of_existing_content_dedups(blobs):
    first = blobs.commit(*stage(blobs, b"same"))
    staging, sha = stage(blobs, b"same")
    assert blobs.commit(staging, sha) == first
    assert not staging.exists()
    assert len([p for p in (blobs.root / "blobs").rglob("*") if p.is_file()]) == 1


@pytest.mark.parametrize("bad", ["", "abc", "A" * 64, "g" * 64, "../" + "a" * 61, "a" * 65])
def test_sha256_is_validated(blobs, bad):
    with pytest.raises(InvalidArgument, match="64 lower-case hex"):
        blobs.path(bad)
    with pytest.raises(InvalidArgument):
        blobs.exists(bad)


def test_commit_refuses_paths_outside_tmp(blobs, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.write_bytes(b"x")
    with pytest.raises(InvalidArgument, match="not under"):
        blobs.commit(outside, hashlib.sha256(b"x").hexdigest())
    assert outside.exists()


def test_missing_blob_is_not_found(blobs):
    with pytest.raises(NotFound, match="blob " + "a" * 64):
        blobs.path("a" * 64)


def test_delete_removes_blob_and_unpacked_dir(blobs):
    sha = stage_commit(blobs, zip_bytes({"m.onnx": b"x"}))
    unpacked = blobs.unpacked_dir(sha)
    assert blobs.delete(sha) is True
    assert not blobs.exists(sha) and not unpacked.exists()
    assert blobs.delete(sha) is False
    assert list((blobs.root / "tmp").iterdir()) == []


def stage_commit(blobs: BlobStore, data: bytes) -> str:
    staging, sha = stage(blobs, data)
    blobs.commit(staging, sha)
    return sha


def test_clean_staging_removes_files_and_dirs(blobs):
    blobs.new_staging_path().write_bytes(b"partial upload")
    scratch = blobs.new_staging_path()
    (scratch / "deep").mkdir(parents=True)
    (scratch / "deep" / "f").write_bytes(b"x")
    sha = stage_commit(blobs, b"kept")
    blobs.clean_staging()
    assert list((blobs.root / "tmp").iterdir()) == []
    assert blobs.exists(sha)


def test_garbage_collect_deletes_only_unreferenced(blobs):
    kept = stage_commit(blobs, b"referenced")
    orphan = stage_commit(blobs, zip_bytes({"m.onnx": b"orphan"}))
    blobs.unpacked_dir(orphan)
    (blobs.root / "unpacked" / ("f" * 64)).mkdir()  # unpacked dir of a vanished blob
    assert blobs.garbage_collect({kept}) == [orphan]
    assert blobs.exists(kept) and not blobs.exists(orphan)
    assert list((blobs.root / "unpacked").iterdir()) == []
    assert blobs.garbage_collect({kept}) == []


def test_unpacked_dir_extracts_once(blobs):
    sha = stage_commit(blobs, zip_bytes({"model.onnx": b"graph", "w.bin": b"weights"}))
    d = blobs.unpacked_dir(sha)
    assert d == blobs.root / "unpacked" / sha
    assert (d / "w.bin").read_bytes() == b"weights"
    (d / "marker").write_bytes(b"")
    assert blobs.unpacked_dir(sha) == d and (d / "marker").exists()  # not re-extracted
    assert list((blobs.root / "tmp").iterdir()) == []


def test_unpacked_dir_of_bad_bundle_leaves_nothing(blobs):
    sha = stage_commit(blobs, zip_bytes({"../escape.onnx": b"x"}))
    with pytest.raises(InvalidArgument, match=r"'\.\.' component"):
        blobs.unpacked_dir(sha)
    assert list((blobs.root / "unpacked").iterdir()) == []
    assert list((blobs.root / "tmp").iterdir()) == []
    assert not (blobs.root / "escape.onnx").exists()


def test_unpacked_dir_of_missing_blob_is_not_found(blobs):
    with pytest.raises(NotFound):
        blobs.unpacked_dir("b" * 64)
