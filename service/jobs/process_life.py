"""What every process of a job does first: die with the process that started it, and
turn SIGTERM (a cancel, or the server stopping) into a flag the job checks."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1
EXIT_PARENT_GONE = 3

log = logging.getLogger(__name__)


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when the one that started it (`parent_pid`: the server, or a
    search's worker) dies (Linux only)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if parent_pid and os.getppid() != parent_pid:  # it died before prctl
        sys.exit(EXIT_PARENT_GONE)


def cancellation_flag() -> threading.Event:
    """An event set by SIGTERM (cancel, or the server stopping)."""
    flag = threading.Event()

    def on_sigterm(signum: int, frame: object) -> None:
        flag.set()  # no logging here: the handler may interrupt a log call

    signal.signal(signal.SIGTERM, on_sigterm)
    return flag
