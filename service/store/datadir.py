"""Exclusive ownership of a data directory by one gateway process."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from pareto_core.errors import FailedPrecondition


class DataDirLock:
    """An flock on DATA_DIR/.lock: two gateways on one directory would corrupt each other's
    start-up clean-up. The kernel drops the lock when the process dies, even on kill -9."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FailedPrecondition(
                f"data dir {self._path.parent} is in use by another pareto process"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
