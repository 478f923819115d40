"""Safe extraction of ONNX bundles (.zip, .tar, .tar.gz) uploaded by users.

Every member is checked before anything is written: relative path without '..', a regular
file or directory (no links, devices or fifos), no duplicates, a bounded member count and a
bounded total size. Files are then written with O_EXCL | O_NOFOLLOW and the real number of
bytes is counted, so a lying header cannot get past the size limit either.
"""

from __future__ import annotations

import gzip
import os
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pareto_core.errors import InvalidArgument, ResourceExhausted

MAX_MEMBERS = 10_000
DEFAULT_MAX_UNPACKED_BYTES = 16 * 1024**3
_CHUNK = 1024 * 1024
_DRIVE_RE = re.compile(r"[A-Za-z]:")
ARCHIVE_ZIP, ARCHIVE_TAR, ARCHIVE_TAR_GZ = "zip", "tar", "tar.gz"


@dataclass(frozen=True)
class _Member:
    raw_name: str
    name: str  # normalised relative POSIX path; "" for the archive root
    is_dir: bool
    size: int
    open: Callable[[], IO[bytes]]


def detect_archive_type(path: Path) -> str:
    """'zip', 'tar' or 'tar.gz', from the first bytes of the file (never its name)."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return ARCHIVE_ZIP
    if head[:2] == b"\x1f\x8b":
        return ARCHIVE_TAR_GZ
    if head[257:262] == b"ustar":
        return ARCHIVE_TAR
    raise InvalidArgument(
        f"bundle is not a .zip, .tar or .tar.gz archive (first bytes: {head[:8].hex()})"
    )


def _normalise(raw: str) -> str:
    def bad(why: str) -> InvalidArgument:
        return InvalidArgument(f"bundle member {raw!r} {why}; members must be relative paths")

    if "\x00" in raw or "\\" in raw:
        raise bad("contains a NUL or backslash character")
    if raw.startswith("/") or _DRIVE_RE.match(raw):
        raise bad("is an absolute path")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise bad("has a '..' component")
    return "/".join(parts)


def _zip_members(zf: zipfile.ZipFile) -> Iterator[_Member]:
    for info in zf.infolist():
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if info.create_system == 3 and kind == stat.S_IFLNK:
            raise InvalidArgument(f"bundle member {info.filename!r} is a symlink; not allowed")
        if info.create_system == 3 and kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise InvalidArgument(
                f"bundle member {info.filename!r} is not a regular file or directory"
            )
        if info.flag_bits & 0x1:
            raise InvalidArgument(f"bundle member {info.filename!r} is encrypted")
        name = _normalise(info.filename)
        yield _Member(info.filename, name, info.is_dir(), info.file_size, _opener(zf, info))


def _opener(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], IO[bytes]]:
    def open_member() -> IO[bytes]:
        try:
            return zf.open(info)
        except OSError as e:  # a corrupt offset: seek before the start of the file
            raise zipfile.BadZipFile(f"member {info.filename!r}: {e}") from e

    return open_member


def _tar_members(tf: tarfile.TarFile) -> Iterator[_Member]:
    while (m := tf.next()) is not None:
        if m.issym() or m.islnk():
            raise InvalidArgument(f"bundle member {m.name!r} is a symlink or hardlink")
        if not (m.isreg() or m.isdir()):
            raise InvalidArgument(f"bundle member {m.name!r} is a device, fifo or special file")
        name = _normalise(m.name)
        yield _Member(m.name, name, m.isdir(), m.size, _tar_opener(tf, m))


def _tar_opener(tf: tarfile.TarFile, m: tarfile.TarInfo) -> Callable[[], IO[bytes]]:
    def open_member() -> IO[bytes]:
        f = tf.extractfile(m)
        assert f is not None  # regular files always have data
        return f

    return open_member


def _check_members(
    members: Iterator[_Member], max_members: int, max_unpacked_bytes: int
) -> list[_Member]:
    """Collect members, enforcing count, size, duplicates and file/dir conflicts."""
    checked: list[_Member] = []
    seen: set[str] = set()
    files: set[str] = set()
    dirs: set[str] = set()
    total = 0
    for m in members:
        if len(checked) >= max_members:
            raise InvalidArgument(f"bundle has more than {max_members} members")
        if m.name in seen:
            raise InvalidArgument(f"bundle member {m.raw_name!r} appears more than once")
        if m.name == "" and not m.is_dir:
            raise InvalidArgument(f"bundle member {m.raw_name!r} has an empty file name")
        parents = _parents(m.name)
        clash = next((p for p in parents if p in files), None)
        if clash is not None or (not m.is_dir and m.name in dirs):
            raise InvalidArgument(
                f"bundle member {m.raw_name!r} conflicts with a file and a directory "
                f"of the same name ({clash or m.name!r})"
            )
        total += 0 if m.is_dir else m.size
        if total > max_unpacked_bytes:
            raise ResourceExhausted(
                f"bundle unpacks to more than the limit of {max_unpacked_bytes} bytes "
                f"(reached at member {m.raw_name!r})"
            )
        seen.add(m.name)
        (dirs if m.is_dir else files).add(m.name)
        dirs.update(parents)
        checked.append(m)
    return checked


def _parents(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _write_member(m: _Member, dest: Path, budget: int) -> int:
    """Write one member below `dest`; returns the bytes written (at most `budget`)."""
    target = dest / m.name
    if m.is_dir:
        target.mkdir(mode=0o755, parents=True, exist_ok=True)
        return 0
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    written = 0
    with os.fdopen(fd, "wb") as out, m.open() as src:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > budget:
                raise ResourceExhausted(
                    f"bundle member {m.raw_name!r} unpacks past the limit on bundle size"
                )
            out.write(chunk)
    return written


def safe_extract(
    archive_path: Path,
    dest_dir: Path,
    max_unpacked_bytes: int,
    max_members: int = MAX_MEMBERS,
) -> None:
    """Extract a bundle into the existing, empty `dest_dir`. On error `dest_dir` may hold
    a partial extraction: the caller owns it and removes it."""
    kind = detect_archive_type(archive_path)
    try:
        if kind == ARCHIVE_ZIP:
            with zipfile.ZipFile(archive_path) as zf:
                _extract_all(_zip_members(zf), dest_dir, max_unpacked_bytes, max_members)
        else:
            mode = "r:gz" if kind == ARCHIVE_TAR_GZ else "r:"
            with tarfile.open(archive_path, mode) as tf:
                _extract_all(_tar_members(tf), dest_dir, max_unpacked_bytes, max_members)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise InvalidArgument(f"bundle is a damaged {kind} archive: {e}") from e
    except (NotImplementedError, RuntimeError) as e:  # zipfile: odd method, "encrypted"
        raise InvalidArgument(f"bundle is an unsupported {kind} archive: {e}") from e


def _extract_all(
    members: Iterator[_Member], dest: Path, max_unpacked_bytes: int, max_members: int
) -> None:
    budget = max_unpacked_bytes
    for m in _check_members(members, max_members, max_unpacked_bytes):
        budget -= _write_member(m, dest, budget)


def find_onnx(bundle_dir: Path) -> Path:
    """The single .onnx file of an extracted bundle (macOS '__MACOSX' and '._*' resource
    forks are ignored), else InvalidArgument."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(bundle_dir):
        dirnames[:] = sorted(d for d in dirnames if d != "__MACOSX")
        for name in sorted(filenames):
            p = Path(dirpath, name)
            onnx_name = name.lower().endswith(".onnx") and not name.startswith("._")
            if onnx_name and not p.is_symlink() and p.is_file():
                found.append(p)
    rel = [str(p.relative_to(bundle_dir)) for p in found]
    if len(found) != 1:
        raise InvalidArgument(
            f"bundle must contain exactly one .onnx file, found {len(found)}"
            + (f": {', '.join(rel[:10])}" if rel else "")
        )
    return found[0]
