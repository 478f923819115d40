"""One replica's side of job leases (README "Running a cluster"), for `JobScheduler`.

Each tick the scheduler renews the lease of the jobs its workers run (`renew`). A job
missing from the renewal is no longer ours: it was re-queued by another replica, which
saw our lease expire (we stalled, or lost the database), and may run elsewhere already.
Its worker is then fenced: SIGTERM now, SIGKILL after a grace, and neither its job nor its
checkpoints are touched again. If renewals fail for a whole lease, every worker is fenced,
since other replicas are about to re-queue the jobs. A few times per lease, `expired()`
re-queues (or FAILs, after PARETO_JOB_MAX_ATTEMPTS runs) the jobs of replicas that
stopped renewing theirs.
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass

from service.jobs.launcher import Launcher
from service.jobs.runs import RunHandle
from service.settings import Settings
from service.store.interfaces import Repository
from service.store.records import JOB_FINAL_STATES, JOB_RUNNING, JobRecord

log = logging.getLogger("service.jobs.scheduler")

POLL_S = 0.5  # the scheduler's tick
KILL_GRACE_S = 5.0  # SIGTERM -> SIGKILL for cancelled, timed-out and fenced workers


@dataclass
class Worker:
    job_id: str
    attempt: int  # the run of the job this worker is
    run: RunHandle
    started: float  # time.monotonic()
    terminated_at: float | None = None


def sweep_interval_s(lease_s: float) -> float:
    """How often expired leases are looked for: a few times per lease."""
    return max(POLL_S, lease_s / 4)


class Leases:
    def __init__(self, repo: Repository, settings: Settings, launcher: Launcher) -> None:
        self._repo = repo
        self._settings = settings
        self._launcher = launcher
        self.replica = settings.replica_id
        self.fenced: list[Worker] = []  # stopping; their jobs belong to another run
        self._renewed_at = time.monotonic()
        self._swept_at = -float("inf")

    def recover_at_start(self) -> list[JobRecord]:
        """Our own RUNNING jobs (our workers died with us) and expired ones, re-queued."""
        s = self._settings
        return self._repo.recover_interrupted_jobs(s.job_max_attempts, self.replica, s.job_lease_s)

    def owns(self, job: JobRecord) -> bool:
        return job.state == JOB_RUNNING and job.owner == self.replica

    def renew(self, workers: dict[str, Worker]) -> None:
        """Heartbeat the jobs of `workers`; fence (and remove) those no longer ours."""
        now = time.monotonic()
        try:
            kept = self._repo.heartbeat_jobs(self.replica, list(workers))
        except Exception:
            if now - self._renewed_at > self._settings.job_lease_s:
                for worker in list(workers.values()):
                    self._fence(workers, worker, "its lease could not be renewed in time")
            raise
        self._renewed_at = now
        for worker in list(workers.values()):
            if worker.job_id in kept:
                continue
            job = self._repo.get_job(worker.job_id)
            if job.state not in JOB_FINAL_STATES:  # (a final one is stopped by the scheduler)
                self._fence(workers, worker, f"it is {job.state} for replica {job.owner!r} now")

    def _fence(self, workers: dict[str, Worker], worker: Worker, why: str) -> None:
        log.warning(
            "job %s: %s, no longer ours (%r): stopping its worker pid %d",
            worker.job_id,
            why,
            self.replica,
            worker.run.pid,
        )
        self._launcher.signal(worker.run, signal.SIGTERM)
        worker.terminated_at = time.monotonic()
        del workers[worker.job_id]
        self.fenced.append(worker)

    def police_fenced(self) -> None:
        """Reap fenced workers once they exit; SIGKILL them after the grace."""
        for worker in list(self.fenced):
            if worker.run.poll() is not None:
                self.fenced.remove(worker)
            elif time.monotonic() - (worker.terminated_at or 0.0) > KILL_GRACE_S:
                self._launcher.signal(worker.run, signal.SIGKILL)

    def expired(self) -> list[JobRecord]:
        """Re-queue the jobs of replicas that stopped renewing their leases (when due)."""
        s = self._settings
        now = time.monotonic()
        if now - self._swept_at < sweep_interval_s(s.job_lease_s):
            return []
        self._swept_at = now
        changed = self._repo.requeue_expired_jobs(s.job_max_attempts, s.job_lease_s)
        for job in changed:
            log.warning("job %s: replica %r lost its lease; now %s", job.id, job.owner, job.state)
        return changed
