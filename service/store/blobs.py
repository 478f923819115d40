"""Content-addressed blob store on the local filesystem.

Layout under `root`:

    blobs/<sha[:2]>/<sha>   committed blobs, read-only, named by their sha256
    tmp/                    staging files and scratch dirs (garbage at start-up)
    unpacked/<sha>/         extracted ONNX bundles (a cache, rebuilt from the blob)

Crash safety: a blob only appears under `blobs/` through an atomic rename of a fully
written and fsynced staging file; an unpacked dir only appears through a rename of a fully
extracted and fsynced temp dir; deletions first rename out of sight, then remove. So after
`kill -9` at any point a visible blob or unpacked dir is always complete, and what is left
over is either in `tmp/` (`clean_staging`) or a blob no record refers to (`garbage_collect`).

`lock` serialises blob changes that must pair with metadata changes: hold it from
`commit` until the record is written, and from reading the referenced set until
`garbage_collect` or `delete` returns, so a concurrent upload of the same content can never
lose its blob.

Several replicas may share one store (a ReadWriteMany volume, see README "Running a
cluster"); `lock` cannot reach across them. Their start-up clean-up is given an
`orphan_grace_s`: a staging entry, unreferenced blob or unpacked dir is only removed once
its mtime is that old (longer than any upload or job can be busy with it), and `commit`
refreshes the mtime of a blob it finds already there, which a new record is about to use.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import threading
import time
import uuid
from pathlib import Path

from pareto_core.errors import InvalidArgument, NotFound
from service.store.bundles import DEFAULT_MAX_UNPACKED_BYTES, safe_extract

_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def check_sha256(sha256: str, field: str = "sha256") -> str:
    """Return `sha256` if it is 64 lower-case hex characters, else InvalidArgument."""
    if not isinstance(sha256, str) or not _SHA256_RE.fullmatch(sha256):
        raise InvalidArgument(f"{field} must be 64 lower-case hex characters, got {sha256!r}")
    return sha256


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(top: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(top):
        for name in filenames:
            fsync_file(Path(dirpath, name))
        fsync_dir(Path(dirpath))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class BlobStore:
    def __init__(
        self,
        root: Path,
        max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
        orphan_grace_s: float = 0.0,
    ) -> None:
        self.root = Path(root)
        self.max_unpacked_bytes = max_unpacked_bytes
        self.orphan_grace_s = orphan_grace_s
        self._blobs = self.root / "blobs"
        self._tmp = self.root / "tmp"
        self._unpacked = self.root / "unpacked"
        for d in (self._blobs, self._tmp, self._unpacked):
            d.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self._unpack_lock = threading.Lock()

    # -- staging ---------------------------------------------------------------------

    def new_staging_path(self) -> Path:
        """A fresh, not yet existing path under tmp/ (same filesystem as blobs/)."""
        return self._tmp / uuid.uuid4().hex

    def clean_staging(self) -> None:
        """Remove everything under tmp/ (older than `orphan_grace_s`). Call at start-up,
        before serving."""
        for entry in self._tmp.iterdir():
            if self._abandoned(entry):
                _remove(entry)
        fsync_dir(self._tmp)

    def _abandoned(self, path: Path) -> bool:
        """Old enough to be removed: always without a grace (one process owns the store)."""
        if self.orphan_grace_s <= 0:
            return True
        try:
            return time.time() - path.lstat().st_mtime > self.orphan_grace_s
        except FileNotFoundError:
            return False

    # -- blobs -------------------------------------------------------------------------

    def _blob_path(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self._blobs / sha256[:2] / sha256

    def commit(self, staging_path: Path, sha256: str) -> Path:
        """Move a fully written staging file into place as blob `sha256` (the caller
        computed the hash). If the blob already exists the staging file is dropped."""
        dest = self._blob_path(sha256)
        staging_path = Path(staging_path)
        if staging_path.parent != self._tmp:
            raise InvalidArgument(f"staging path {staging_path} is not under {self._tmp}")
        with self.lock:
            if dest.exists():
                staging_path.unlink()
                with contextlib.suppress(OSError):  # in use again: not an orphan (see above)
                    os.utime(dest)
                return dest
            if not dest.parent.is_dir():
                dest.parent.mkdir()
                fsync_dir(self._blobs)
            os.chmod(staging_path, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            fsync_file(staging_path)
            os.replace(staging_path, dest)
            fsync_dir(dest.parent)
        return dest

    def path(self, sha256: str) -> Path:
        p = self._blob_path(sha256)
        if not p.is_file():
            raise NotFound(f"blob {sha256} not found in the blob store")
        return p

    def exists(self, sha256: str) -> bool:
        return self._blob_path(sha256).is_file()

    def delete(self, sha256: str) -> bool:
        """Delete the blob and its unpacked dir. Returns False when there was no blob."""
        blob = self._blob_path(sha256)
        with self.lock, self._unpack_lock:
            self._drop_unpacked(sha256)
            if not blob.exists():
                return False
            blob.unlink()
            fsync_dir(blob.parent)
            return True

    def garbage_collect(self, referenced: set[str]) -> list[str]:
        """Delete every blob (and unpacked dir) whose sha is not in `referenced`, e.g. left
        by a crash between blob commit and metadata commit. Returns the deleted shas.
        Hold `lock` while computing `referenced` and calling this."""
        deleted: list[str] = []
        with self.lock:
            for shard in sorted(self._blobs.iterdir()):
                for blob in sorted(shard.iterdir()) if shard.is_dir() else ():
                    sha = blob.name
                    if (
                        _SHA256_RE.fullmatch(sha)
                        and sha not in referenced
                        and self._abandoned(blob)
                        and self.delete(sha)
                    ):
                        deleted.append(sha)
            with self._unpack_lock:
                for d in self._unpacked.iterdir():
                    if d.name not in referenced and self._abandoned(d):
                        self._drop_unpacked(d.name)
        return deleted

    # -- unpacked bundles --------------------------------------------------------------

    def unpacked_dir(self, sha256: str) -> Path:
        """Directory holding the extracted contents of bundle blob `sha256`, extracted
        on first use. The dir only becomes visible once complete."""
        final = self._unpacked / check_sha256(sha256)
        if final.is_dir():
            return final
        with self._unpack_lock:
            if final.is_dir():
                return final
            blob = self.path(sha256)
            scratch = self.new_staging_path()
            scratch.mkdir()
            try:
                safe_extract(blob, scratch, self.max_unpacked_bytes)
                _fsync_tree(scratch)
                os.rename(scratch, final)
                fsync_dir(self._unpacked)
            finally:
                _remove(scratch)
        return final

    def _drop_unpacked(self, name: str) -> None:
        """Rename out of sight first so a crash never leaves a partial dir visible."""
        target = self._unpacked / name
        if not target.exists():
            return
        trash = self.new_staging_path()
        os.rename(target, trash)
        fsync_dir(self._unpacked)
        _remove(trash)
