"""Running trials outside the search's worker: in a trial process beside it, or in a Ray
task on any node.

Such a process opens the job's store itself (`TrialContext`: the data dir, the job, its
run, the shared settings), builds the search's `TrialInputs` once and keeps them for the
trials it runs next. It writes nothing but, on Ray, progress events (`TrialEvents`, fenced
to the job's run like the worker's writes): the study and the job's percent belong to the
search's worker, and a trial process beside it hands its progress to the worker instead
(service/search/executors.py), since on the embedded SQLite store every writer more is a
writer waiting for the lock.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from compressors.base import ProgressFn
from service.jobs.events import MIN_EVENT_INTERVAL_S
from service.jobs.spawn import scratch_path
from service.search.outcome import TrialResult, TrialTask, execute
from service.search.trial import TrialInputs
from service.settings import Settings, load_settings
from service.store.interfaces import Repository
from service.store.records import JOB_RUNNING, JobEvent


@dataclass(frozen=True)
class TrialContext:
    data_dir: str
    job_id: str
    attempt: int  # the job's run that asks for the trials
    settings: dict[str, Any]  # spawn.shared_settings of the search's worker


class TrialEvents:
    """Progress of a trial run here: RUNNING events at the job's current percent (read, never
    written: the search's worker moves it), at most one per MIN_EVENT_INTERVAL_S."""

    def __init__(self, repo: Repository, job_id: str) -> None:
        self._repo = repo
        self._job_id = job_id
        self._last = -float("inf")

    def for_trial(self, number: int) -> ProgressFn:
        def progress(fraction: float, message: str, metrics: dict[str, float]) -> None:
            now = time.monotonic()
            if now - self._last < MIN_EVENT_INTERVAL_S:
                return
            self._last = now
            percent = self._repo.get_job(self._job_id).percent
            clean = {k: float(v) for k, v in metrics.items()}
            step = f"trial {number}"
            self._repo.add_event(
                JobEvent(self._job_id, 0, JOB_RUNNING, step, percent, message, clean)
            )

        return progress


class TrialProcess:
    """What one process needs to run trials of one search run."""

    def __init__(
        self,
        context: TrialContext,
        is_cancelled: Callable[[], bool],
        progress_for: Callable[[int], ProgressFn] | None = None,
    ) -> None:
        """`progress_for(trial number)`: where a trial's progress goes (default: events
        written to the store)."""
        from compressors import registry
        from runtimes import helper_process
        from service.search.inputs import search_inputs
        from service.store.blobs import BlobStore
        from service.store.open import open_repository

        self.context = context
        data_dir = Path(context.data_dir)
        settings = trial_settings(context)
        registry.add_modules(settings.technique_modules())
        helper_process.configure(settings.helper_memory_bytes, settings.max_helper_processes)
        self.repo = open_repository(settings, data_dir)
        self.repo.fence(context.job_id, context.attempt)
        job = self.repo.get_job(context.job_id)
        search = self.repo.get_search(job.id)
        if search is None:
            raise LookupError(f"job {job.id} is not a search")
        self.progress_for = progress_for or TrialEvents(self.repo, job.id).for_trial
        self.scratch = scratch_path(data_dir, job.id, context.attempt)
        self.inputs: TrialInputs = search_inputs(
            self.repo,
            BlobStore(data_dir),
            job,
            search.spec,
            settings,
            self.scratch,
            is_cancelled,
            lambda fraction, message, metrics: None,
        )

    def run(self, task: TrialTask) -> TrialResult:
        inputs = replace(self.inputs, progress=self.progress_for(task.number))
        return execute(inputs, task)

    def close(self) -> None:
        self.repo.close()


def count_run(context: TrialContext, number: int) -> int:
    """Which run of trial `number` this is (1, then 2, ... when Ray retries a lost run): a
    marker per run in the job's scratch, created exclusively."""
    runs = scratch_path(Path(context.data_dir), context.job_id, context.attempt) / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        try:
            os.close(os.open(runs / f"trial-{number}-{n}", os.O_CREAT | os.O_EXCL))
            return n
        except FileExistsError:
            n += 1


def trial_settings(context: TrialContext) -> Settings:
    return load_settings(data_dir=Path(context.data_dir), **context.settings)
