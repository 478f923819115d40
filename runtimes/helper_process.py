"""Helper processes (the memory probe, the .pt2 inspector, the load check at upload), bounded.

Each runs `python -m MODULE ARGS` through a short bootstrap that, before anything else,
limits the child's own address space (RLIMIT_AS: setting it from the multi-threaded
parent would need `preexec_fn`, which is unsafe there) and lowers its CPU priority, so a
helper never competes with serving. At most `max_running` helpers run at once in this
process; the others wait their turn. A wall-time limit ends the rest.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

DEFAULT_MEMORY_BYTES = 4 * 1024**3
DEFAULT_MAX_RUNNING = 2
NICENESS = 10
_BOOTSTRAP = f"""
import os, resource, runpy, sys
limit, module = int(sys.argv[1]), sys.argv[2]
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
os.nice({NICENESS})
sys.argv = [module, *sys.argv[3:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


class _Limits:
    def __init__(self) -> None:
        self.memory_bytes = DEFAULT_MEMORY_BYTES
        self.slots = threading.BoundedSemaphore(DEFAULT_MAX_RUNNING)


_limits = _Limits()


def configure(memory_bytes: int, max_running: int) -> None:
    """Set by the process that owns the settings (PARETO_HELPER_MEMORY_BYTES,
    PARETO_MAX_HELPER_PROCESSES) before it starts any helper."""
    _limits.memory_bytes = memory_bytes
    _limits.slots = threading.BoundedSemaphore(max_running)


def memory_limit() -> int:
    return _limits.memory_bytes


def run_module(
    module: str,
    args: Sequence[str],
    *,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run `python -m module args` as a bounded helper; its output captured.
    subprocess.TimeoutExpired past `timeout_s` (the child is killed)."""
    command = [sys.executable, "-c", _BOOTSTRAP, str(_limits.memory_bytes), module, *args]
    with _limits.slots:
        return subprocess.run(
            command,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
