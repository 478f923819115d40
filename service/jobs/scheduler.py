"""Runs queued jobs, one thread in the server.

Runs start through a launcher (service/jobs/launcher.py): worker processes of this
replica, or Ray actors with PARETO_RAY_ADDRESS. The scheduler thread is the only one that
starts, signals and reaps them (so a local worker's PR_SET_PDEATHSIG, tied to the thread
that forked it, lasts as long as the scheduler). Each tick it reaps ended runs (a job a
run left unfinished becomes FAILED with the reason, or, when the launcher says the run was
lost, such as a Ray worker that died, QUEUED again until the job has used
PARETO_JOB_MAX_ATTEMPTS runs), stops runs whose job was cancelled or ran past
PARETO_JOB_TIMEOUT_S (SIGTERM to the process group, SIGKILL after a grace), then claims
queued jobs while fewer than PARETO_JOB_CONCURRENCY run. `wake()` runs a tick at once.

The database is the source of truth: cancelling is writing CANCELLED (done by `cancel`
in the caller's thread); the tick sees it and stops the worker. On `stop()` running
workers are terminated but their jobs stay RUNNING, and `recover_interrupted_jobs` re-queues
them at the next start.

Replicas (README "Running a cluster"): jobs are claimed as PARETO_REPLICA_ID, and each
tick renews the lease of this replica's running jobs. A job whose lease is older than
PARETO_JOB_LEASE_S is re-queued by any replica (its own died or lost the database). When
a renewal finds a job no longer ours (re-queued meanwhile), or renewals have failed for a
whole lease, the worker is stopped and its job left alone: fencing, so one job never has
two live workers for long. At start only this replica's jobs and expired ones are
recovered, never a live replica's.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import threading
import time

from pareto_core.errors import FailedPrecondition
from service.jobs import spawn
from service.jobs.checkpoints import remove_checkpoints
from service.jobs.events import finish_job
from service.jobs.launcher import Launcher, make_launcher
from service.jobs.leases import KILL_GRACE_S, POLL_S, Leases, Worker
from service.jobs.runs import RunEnd
from service.metrics import JOBS
from service.settings import Settings
from service.store.interfaces import Repository
from service.store.records import (
    JOB_CANCELLED,
    JOB_FAILED,
    JOB_FINAL_STATES,
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_STATES,
    JobEvent,
    JobRecord,
)

log = logging.getLogger(__name__)

JOB_COUNT_INTERVAL_S = 5.0  # how often the pareto_jobs gauge is recounted
NOT_READY_LOG_S = 60.0  # how often "the launcher cannot start runs" is logged


class JobScheduler:
    def __init__(self, repo: Repository, settings: Settings, launcher: Launcher | None = None):
        self._repo = repo
        self._settings = settings
        self.launcher = launcher or make_launcher(settings)
        self._leases = Leases(repo, settings, self.launcher)
        self._workers: dict[str, Worker] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._stop_grace = KILL_GRACE_S
        self._thread: threading.Thread | None = None
        self._counted_at = -float("inf")
        self._not_ready_logged = -float("inf")

    def start(self) -> None:
        """Recover interrupted jobs, then start dispatching queued ones."""
        for job in self._leases.recover_at_start():
            self._recovered_event(job)
        self._thread = threading.Thread(target=self._loop, name="job-scheduler", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """A job was queued (or cancelled): act without waiting for the next poll."""
        self._wake.set()

    def check_can_start(self) -> None:
        """Raise when a new job could not be started (CreateJob asks, before storing)."""
        self.launcher.check_ready()

    def cancel(self, job_id: str) -> JobRecord:
        """QUEUED or RUNNING -> CANCELLED now; a running worker is stopped by the next tick."""
        job = self._repo.get_job(job_id)
        if job.state in JOB_FINAL_STATES:
            raise FailedPrecondition(f"job {job_id} is already {job.state}; nothing to cancel")
        finish_job(self._repo, job_id, JOB_CANCELLED, f"cancelled by the user while {job.state}")
        if job.state == JOB_QUEUED:  # a running job's worker is reaped, which removes them
            remove_checkpoints(self._settings.data_dir, job_id)
        self.wake()
        return self._repo.get_job(job_id)

    def stop(self, grace: float = 5.0) -> None:
        """Stop dispatching; stop running workers (their jobs are re-queued at restart, or
        at once with a shared database)."""
        self._stop_grace = grace
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def running_jobs(self) -> list[str]:
        return list(self._workers)

    @property
    def max_queued_jobs(self) -> int:
        return self._settings.max_queued_jobs

    # -- the scheduler thread --------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._tick()
            except Exception:  # the scheduler must outlive any one bad tick
                log.exception("job scheduler tick failed")
            self._wake.wait(POLL_S)
            self._wake.clear()
        stopped = list(self._workers)
        self._terminate_all(self._stop_grace)
        if stopped and self._repo.shared:
            self._hand_back()

    def _hand_back(self) -> None:
        """A graceful stop in a cluster: re-queue this replica's interrupted jobs now, for
        the other replicas, instead of after the lease (SQLite: at the next start)."""
        try:
            jobs = self._repo.recover_interrupted_jobs(
                self._settings.job_max_attempts, owner=self._leases.replica
            )
        except Exception:  # the database is away: the lease hands them over instead
            log.exception("could not hand back the interrupted jobs; the lease will")
            return
        for job in jobs:
            self._recovered_event(job)

    def _tick(self) -> None:
        self._leases.renew(self._workers)
        for worker in list(self._workers.values()):
            if worker.run.poll() is not None:
                self._reap(worker)
            else:
                self._police(worker)
        self._leases.police_fenced()
        for job in self._leases.expired():
            self._recovered_event(job)
            self._wake.set()
        while self._free_slot():
            job = self._repo.claim_next_job(self._leases.replica)
            if job is None:
                break
            self._launch(job)
        self._count_jobs()

    def _free_slot(self) -> bool:
        if len(self._workers) >= self._settings.job_concurrency or self._stopping.is_set():
            return False
        if self.launcher.ready():
            return True
        now = time.monotonic()
        if now - self._not_ready_logged > NOT_READY_LOG_S:
            self._not_ready_logged = now
            log.warning("%s cannot start runs now; queued jobs wait", self.launcher.description)
        return False

    def _count_jobs(self) -> None:
        """Set pareto_jobs{state} from the store, at most every JOB_COUNT_INTERVAL_S."""
        now = time.monotonic()
        if now - self._counted_at < JOB_COUNT_INTERVAL_S:
            return
        self._counted_at = now
        counts = self._repo.count_jobs_by_state()
        for state in JOB_STATES:
            JOBS.labels(state).set(counts.get(state, 0))

    def _launch(self, job: JobRecord) -> None:
        message = f"worker starting (attempt {job.attempts})"
        self._repo.add_event(JobEvent(job.id, 0, JOB_RUNNING, "start", job.percent, message))
        try:
            run = self.launcher.start(job)
        except OSError as exc:
            finish_job(self._repo, job.id, JOB_FAILED, f"cannot start the worker: {exc}")
            return
        self._workers[job.id] = Worker(job.id, job.attempts, run, time.monotonic())
        log.info("job %s: run started (%s, pid %d)", job.id, self.launcher.description, run.pid)

    def _police(self, worker: Worker) -> None:
        """Stop a worker whose job is over (cancelled, timed out, or finished but the worker
        lingers) so it frees its slot; SIGKILL after a grace."""
        now = time.monotonic()
        if worker.terminated_at is not None:
            if now - worker.terminated_at > KILL_GRACE_S:
                self.launcher.signal(worker.run, signal.SIGKILL)
            return
        timeout = self._settings.job_timeout_s
        if now - worker.started > timeout:
            reason = f"exceeded PARETO_JOB_TIMEOUT_S={timeout:g} (wall time of one job)"
            finish_job(self._repo, worker.job_id, JOB_FAILED, reason)
        if self._repo.get_job(worker.job_id).state in JOB_FINAL_STATES:
            # cancelled or timed out; or finished by the worker, which should be exiting
            self.launcher.signal(worker.run, signal.SIGTERM)
            worker.terminated_at = now

    def _reap(self, worker: Worker) -> None:
        del self._workers[worker.job_id]
        log.info("job %s: run ended with %s", worker.job_id, worker.run.returncode)
        scratch = spawn.scratch_path(self._settings.data_dir, worker.job_id, worker.attempt)
        shutil.rmtree(scratch, ignore_errors=True)
        self._wake.set()  # a slot is free
        job = self._repo.get_job(worker.job_id)
        if job.state not in JOB_FINAL_STATES:
            if not self._leases.owns(job):
                return  # re-queued meanwhile: another run owns it (and its checkpoints)
            end = self.launcher.ended(worker.job_id, worker.run)
            if end.retry and self._retry(job, end):
                return  # runs again, from its checkpoints
            finish_job(self._repo, worker.job_id, JOB_FAILED, self._failed_reason(job, end))
        remove_checkpoints(self._settings.data_dir, worker.job_id)  # the job is over

    def _retry(self, job: JobRecord, end: RunEnd) -> bool:
        """Re-queue a job whose run was lost, while it has attempts left."""
        limit = self._settings.job_max_attempts
        if job.attempts >= limit:
            return False
        requeued = self._repo.requeue_job(job.id, self._leases.replica, job.attempts)
        if requeued is None:
            return True  # finished or taken meanwhile: not ours to fail
        message = f"re-queued: {end.reason} (attempt {job.attempts} of {limit})"
        log.warning("job %s: %s", job.id, message)
        self._repo.add_event(JobEvent(job.id, 0, JOB_QUEUED, "retry", job.percent, message))
        self._wake.set()
        return True

    def _failed_reason(self, job: JobRecord, end: RunEnd) -> str:
        if not end.retry:
            return end.reason
        limit = self._settings.job_max_attempts
        return f"{end.reason}; after {job.attempts} attempt(s) (PARETO_JOB_MAX_ATTEMPTS={limit})"

    def _terminate_all(self, grace: float) -> None:
        """Server shutdown: SIGTERM every worker, SIGKILL what is left after `grace`."""
        workers = [*self._workers.values(), *self._leases.fenced]
        for worker in workers:
            self.launcher.signal(worker.run, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for worker in workers:
            try:
                worker.run.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.launcher.signal(worker.run, signal.SIGKILL)
                worker.run.wait()
        self._workers.clear()
        self._leases.fenced.clear()

    def _recovered_event(self, job: JobRecord) -> None:
        if job.state == JOB_QUEUED and job.owner in ("", self._leases.replica):
            why = "its replica stopped" if self._stopping.is_set() else "a server restart"
            message = f"re-queued after {why} (attempts so far: {job.attempts})"
        elif job.state == JOB_QUEUED:
            message = (
                f"re-queued: replica {job.owner!r} stopped renewing its lease "
                f"(attempts so far: {job.attempts})"
            )
        else:
            message = job.reason or f"{job.state.lower()} after a server restart"
            remove_checkpoints(self._settings.data_dir, job.id)
        self._repo.add_event(JobEvent(job.id, 0, job.state, "recover", job.percent, message))
