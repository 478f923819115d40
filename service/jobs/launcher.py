"""Where a claimed job runs: the interface the scheduler starts, stops and reaps runs
through, and the choice of one (`make_launcher`).

A launcher starts one run of a job and returns a handle with `subprocess.Popen`'s
`pid`, `poll()`, `returncode` and `wait(timeout)`; `signal` stops it (SIGTERM: cancel,
the run ends cooperatively; SIGKILL: now); `ended` says why a run that left its job
unfinished ended, and whether the job should run again. It never retries on its own:
re-queueing is the scheduler's, counted in the job's attempts (PARETO_JOB_MAX_ATTEMPTS).

* `LocalLauncher` (PARETO_RAY_ADDRESS empty): a worker process of this replica
  (service/jobs/spawn.py). A worker that dies fails its job, with the exit's reason.
* `RayLauncher` (service/jobs/ray_launcher.py, imported only when PARETO_RAY_ADDRESS is
  set): the job runs in a Ray actor with the job's resources; a run Ray loses (its worker
  or node died) is re-queued until the job has used its attempts.
"""

from __future__ import annotations

import signal
from typing import Protocol

from service.jobs import spawn
from service.jobs.runs import RunEnd, RunHandle
from service.settings import Settings
from service.store.records import JobRecord


class Launcher(Protocol):
    description: str  # for logs, e.g. "local worker processes"

    def check_ready(self) -> None:
        """Raise (Unavailable, FailedPrecondition) when a job could not be started now:
        asked at CreateJob, before anything is stored."""

    def ready(self) -> bool:
        """Whether runs can be started now (asked before claiming a job); cheap."""

    def start(self, job: JobRecord) -> RunHandle:
        """Start a run of the claimed `job`; OSError if it cannot be started."""

    def signal(self, handle: RunHandle, sig: signal.Signals) -> None:
        """SIGTERM: stop cooperatively (a cancel); SIGKILL: stop now."""

    def ended(self, job_id: str, handle: RunHandle) -> RunEnd:
        """Why a run of `job_id` that exited left the job unfinished."""


class LocalLauncher:
    """Worker processes of this replica (`python -m service.worker`)."""

    description = "local worker processes"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def check_ready(self) -> None:
        return None

    def ready(self) -> bool:
        return True

    def start(self, job: JobRecord) -> RunHandle:
        return spawn.spawn_worker(job.id, self._settings)

    def signal(self, handle: RunHandle, sig: signal.Signals) -> None:
        spawn.signal_group(handle, sig)

    def ended(self, job_id: str, handle: RunHandle) -> RunEnd:
        log = spawn.log_path(self._settings.data_dir, job_id)
        reason = spawn.exit_reason(handle.returncode or 0, log, self._settings)
        return RunEnd(reason, retry=False)


def make_launcher(settings: Settings) -> Launcher:
    """The launcher the settings ask for; Ray's module is imported only when they do."""
    if settings.ray_address:
        from service.jobs.ray_launcher import RayLauncher

        return RayLauncher(settings)
    return LocalLauncher(settings)
