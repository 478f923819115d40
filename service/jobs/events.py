"""Writing a job's progress: throttled RUNNING events and the one final transition.

Both the scheduler (in the server) and the worker process write through these helpers, on
the shared SQLite database. A final state is written once: whoever gets there first (the
worker finishing, the user cancelling, the scheduler seeing a crash) wins, and only the
winner appends the final event, which is what ends every WatchJob stream.
"""

from __future__ import annotations

import time

from service.store.interfaces import Repository
from service.store.records import JOB_FINAL_STATES, JOB_RUNNING, JobEvent, JobRecord

# Progress callbacks may fire per batch; each event is a durable SQLite write.
MIN_EVENT_INTERVAL_S = 0.5


class JobProgress:
    """RUNNING events of one job, at most one per MIN_EVENT_INTERVAL_S unless forced."""

    def __init__(
        self, repo: Repository, job_id: str, min_interval_s: float = MIN_EVENT_INTERVAL_S
    ) -> None:
        self._repo = repo
        self._job_id = job_id
        self._min_interval_s = min_interval_s
        self._last_time = -float("inf")
        self.percent = 0.0

    def emit(
        self,
        step: str,
        percent: float,
        message: str,
        metrics: dict[str, float] | None = None,
        *,
        force: bool = False,
    ) -> None:
        percent = min(100.0, max(self.percent, percent))  # never goes backwards
        now = time.monotonic()
        if not force and now - self._last_time < self._min_interval_s:
            return
        self._last_time = now
        self.percent = percent
        clean = {k: float(v) for k, v in (metrics or {}).items()}
        self._repo.add_event(
            JobEvent(self._job_id, 0, JOB_RUNNING, step, round(percent, 2), message, clean)
        )
        self._repo.update_job(self._job_id, percent=round(percent, 2))


def finish_job(
    repo: Repository,
    job_id: str,
    state: str,
    reason: str = "",
    message: str = "",
    **fields: object,
) -> JobRecord | None:
    """Move the job to final `state` unless it is final already; returns the record when
    this call made the change (and wrote the final event, whose message is `message`, else
    the reason), else None."""
    if repo.get_job(job_id).state in JOB_FINAL_STATES:
        return None
    record = repo.update_job(job_id, state=state, reason=reason, **fields)
    if record.state != state or record.reason != reason:
        return None  # someone else finished it in between
    message = message or reason or state.lower()
    repo.add_event(JobEvent(job_id, 0, state, "", record.percent, message, {}))
    return record
