"""Starting, signalling and explaining the exit of job worker processes.

A worker runs `python -m service.worker` in its own process group (so a cancel reaches
the helper processes it starts, e.g. evaluation, and a terminal's Ctrl-C does not), with
its address space limited by RLIMIT_AS (set from here with prlimit: no preexec_fn, which is
unsafe in the multi-threaded server), its threads pinned to PARETO_JOB_THREADS, and its
output appended to `<data dir>/jobs/<job id>.log`.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from service.jobs.runs import RunHandle
from service.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Settings the worker must share with the server that started it.
SHARED_SETTINGS = (
    "job_threads",
    "extra_technique_modules",
    "measure_memory",
    "log_level",
    "runtime_options",  # a job's evaluation builds runtime artifacts like the server does
    "database_url",  # the worker writes its job's progress to the server's metadata store
    "helper_memory_bytes",  # its memory probes are bounded like the server's
    "max_helper_processes",
    "ray_address",  # a search on Ray runs its trials as Ray tasks
    "job_memory_limit_bytes",  # ... each with the resources of a job
    "job_max_attempts",  # ... and as many runs
)
TAIL_LINES = 8
TAIL_CHARS = 1500


def log_path(data_dir: Path, job_id: str) -> Path:
    return data_dir / "jobs" / f"{job_id}.log"


def scratch_path(data_dir: Path, job_id: str, attempt: int) -> Path:
    """The scratch directory of one run of a job (under the store's tmp/, which start-up
    cleans): its worker works there, and the scheduler removes it when the worker ends,
    however it ends."""
    return Path(data_dir) / "tmp" / f"{job_id}-run{attempt}"


def shared_settings(settings: Settings) -> dict[str, Any]:
    """SHARED_SETTINGS as plain values (secrets revealed): `Settings(**them)` in a process
    that does not inherit the server's environment (a Ray worker) agrees with the server."""
    values = {name: getattr(settings, name) for name in SHARED_SETTINGS}
    return {k: v.get_secret_value() if isinstance(v, SecretStr) else v for k, v in values.items()}


def thread_env(settings: Settings) -> dict[str, str]:
    """Pins the math libraries' thread pools of a job's process to PARETO_JOB_THREADS."""
    return {var: str(settings.job_threads) for var in THREAD_ENV}


def worker_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(PROJECT_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    for name, value in shared_settings(settings).items():
        if isinstance(value, dict):
            env[f"PARETO_{name.upper()}"] = json.dumps(value)
        else:
            env[f"PARETO_{name.upper()}"] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )
    return env | thread_env(settings)


def spawn_worker(job_id: str, settings: Settings) -> subprocess.Popen:
    """Start the worker for `job_id`; OSError if it cannot be started."""
    return spawn_module("service.worker", job_id, settings, settings.job_memory_limit_bytes)


def spawn_module(
    module: str, job_id: str, settings: Settings, memory_limit: int | None
) -> subprocess.Popen:
    """Run `python -m MODULE --data-dir D --job-id ID --parent-pid P` as a job's process:
    its own process group, the shared settings, output to the job's log, its address space
    limited to `memory_limit` (None: no limit). OSError if it cannot be started."""
    data_dir = Path(settings.data_dir).resolve()
    path = log_path(data_dir, job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        module,
        "--data-dir",
        str(data_dir),
        "--job-id",
        job_id,
        "--parent-pid",
        str(os.getpid()),
    ]
    with open(path, "ab") as log_file:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=worker_env(settings),
            process_group=0,
        )
    if memory_limit is not None:
        with contextlib.suppress(ProcessLookupError):  # already gone: its exit status says why
            resource.prlimit(process.pid, resource.RLIMIT_AS, (memory_limit, memory_limit))
    return process


def signal_group(process: RunHandle, sig: signal.Signals) -> None:
    """Send `sig` to the worker and everything it started (its process group)."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def exit_reason(returncode: int, log: Path, settings: Settings) -> str:
    """Why a worker that did not finish its job exited, for the job's FAILED reason."""
    if returncode < 0:
        name = signal_name(-returncode)
        if -returncode == signal.SIGKILL:
            limit = settings.job_memory_limit_bytes
            return f"worker killed by {name} (out of memory? PARETO_JOB_MEMORY_LIMIT_BYTES={limit})"
        return f"worker killed by {name}"
    tail = log_tail(log)
    return f"worker exited with code {returncode}" + (f": {tail}" if tail else "")


def log_tail(path: Path) -> str:
    """The last lines of a worker's log, joined on one line."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 16 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-TAIL_LINES:])[-TAIL_CHARS:]


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
