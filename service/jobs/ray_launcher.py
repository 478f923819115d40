"""Jobs on a Ray cluster (PARETO_RAY_ADDRESS): the gateway's side, which never imports Ray.

A run of a job is a small local process, `python -m service.ray_driver` (started,
signalled and reaped like a local worker), that connects to the cluster as a Ray driver,
starts the job's actor with the job's resources and waits for it. Ray lives in that
process, never in the gateway's: a Ray outage cannot take the gateway down (a Ray driver
whose head stays away exits), and the gateway stays fast to start.

* CreateJob first checks the configuration (PostgreSQL is required: FAILED_PRECONDITION
  naming PARETO_DATABASE_URL) and that the head answers on its address (UNAVAILABLE naming
  it otherwise), before anything is stored; the scheduler claims no job while it does not.
* A run Ray lost (the actor's worker or node died, Ray's memory monitor killed it, the
  head went away) ends the driver with EXIT_LOST or EXIT_UNREACHABLE and the reason on its
  last log line: the job is re-queued until it has used PARETO_JOB_MAX_ATTEMPTS runs.
"""

from __future__ import annotations

import signal
import socket
import time

from pareto_core.errors import FailedPrecondition, Unavailable
from service.jobs import spawn
from service.jobs.runs import RunEnd, RunHandle
from service.settings import Settings
from service.store.records import JobRecord

EXIT_LOST = 75  # (EX_TEMPFAIL) Ray lost the run: its actor's worker or node died
EXIT_UNREACHABLE = 69  # (EX_UNAVAILABLE) the driver could not reach the cluster
REASON_PREFIX = "ray: "  # the driver's line saying why a run was lost
PROBE_TIMEOUT_S = 3.0
READY_CACHE_S = 5.0  # how long a probe's answer is reused by the scheduler


def head_endpoint(address: str) -> tuple[str, int]:
    """(host, port) of `host:port` or `ray://host:port`."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    return host.strip("[]"), int(port)


def check_settings(settings: Settings) -> None:
    """Ray needs what every node can reach: PostgreSQL (and one data dir on a shared volume,
    which cannot be checked from here)."""
    if settings.ray_address and not settings.database_url.get_secret_value():
        raise FailedPrecondition(
            f"PARETO_RAY_ADDRESS={settings.ray_address} needs PARETO_DATABASE_URL: jobs on "
            "Ray run on other machines, which share the metadata in PostgreSQL (the embedded "
            "SQLite store serves one machine); set PARETO_DATABASE_URL=postgresql://... and "
            "mount the data dir at the same path on every Ray node"
        )


def probe(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Unavailable, naming the address, unless something accepts connections there."""
    host, port = head_endpoint(address)
    try:
        socket.create_connection((host, port), timeout_s).close()
    except OSError as exc:
        raise Unavailable(
            f"the Ray cluster at {address} (PARETO_RAY_ADDRESS) is unreachable: {exc}; "
            "nothing was stored, try again when it is back"
        ) from None


class RayLauncher:
    def __init__(self, settings: Settings) -> None:
        check_settings(settings)
        self._settings = settings
        self.address = settings.ray_address
        self.description = f"Ray at {self.address}"
        self._ready_at = -float("inf")
        self._ready = False

    def check_ready(self) -> None:
        check_settings(self._settings)
        probe(self.address)

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self._ready_at > READY_CACHE_S:
            try:
                probe(self.address)
                self._ready = True
            except Unavailable:
                self._ready = False
            self._ready_at = now
        return self._ready

    def start(self, job: JobRecord) -> RunHandle:
        return spawn.spawn_module("service.ray_driver", job.id, self._settings, None)

    def signal(self, handle: RunHandle, sig: signal.Signals) -> None:
        """SIGTERM: the driver asks the actor to stop (a cancel); SIGKILL: the driver dies
        and Ray, its owner gone, kills the actor and the tasks it started."""
        spawn.signal_group(handle, sig)

    def ended(self, job_id: str, handle: RunHandle) -> RunEnd:
        code = handle.returncode or 0
        log = spawn.log_path(self._settings.data_dir, job_id)
        said = _said(spawn.log_tail(log))
        if code in (EXIT_LOST, EXIT_UNREACHABLE):
            return RunEnd(said or f"the Ray run ended with code {code}", retry=True)
        if code < 0:  # the driver itself was killed, not by us (we stop cancelled runs only)
            name = spawn.signal_name(-code)
            return RunEnd(f"its Ray driver process was killed by {name}", retry=True)
        return RunEnd(spawn.exit_reason(code, log, self._settings), retry=False)


def describe_error(exc: BaseException) -> str:
    """A Ray error in one line: its first line and, for a dead worker, the exit detail."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    detail = text.split("Worker exit detail:", 1)
    if len(detail) == 2:
        first += " " + detail[1].split(". Some common causes", 1)[0].strip().rstrip(".") + "."
    return f"{type(exc).__name__}: {first}"


def _said(tail: str) -> str:
    """The driver's last `ray: ...` line in a log tail (lines joined by " | ")."""
    lines = [line for line in tail.split(" | ") if REASON_PREFIX in line]
    return lines[-1].split(REASON_PREFIX, 1)[1].strip() if lines else ""
