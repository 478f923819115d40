"""The folder as Pareto stores it: an uncompressed tar of the files it reads, written the
same way every time (sorted as given, no owners, times or modes from the uploader), so the
same folder is the same blob; and single members read back without unpacking the rest
(the gateway reads tokenizer.json this way when it loads a model)."""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from pareto_core.errors import Internal


class _Hashing:
    """A write-only file that hashes what passes through it."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self._out.write(data)


def pack_folder(root: Path, files: Sequence[str], out: Path) -> tuple[str, int]:
    """Write `files` (relative POSIX paths under `root`) to a new tar at `out`; returns its
    sha256 and size."""
    with out.open("xb") as raw:
        sink = _Hashing(raw)
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            for name in files:
                info = tarfile.TarInfo(name)
                info.size = (root / name).stat().st_size
                info.mode = 0o644
                with (root / name).open("rb") as data:
                    tar.addfile(info, data)
    return sink.digest.hexdigest(), sink.size


def read_member(archive: Path, name: str, limit: int) -> bytes:
    """Member `name` of a tar written by `pack_folder` (Internal when it is not there or is
    larger than `limit`: the archive was checked when it was stored)."""
    with tarfile.open(archive, mode="r:") as tar:
        try:
            info = tar.getmember(name)
        except KeyError:
            raise Internal(f"the stored folder has no {name}") from None
        member = tar.extractfile(info) if info.isreg() and info.size <= limit else None
        if member is None:
            raise Internal(f"the stored folder's {name} is not a file of at most {limit} bytes")
        return member.read()
