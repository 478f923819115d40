"""The Ray actor that runs one run of one job: the same worker entry as a local worker
(`service.worker.run_reported`, i.e. `run_job`), in a Ray worker process of its own.

Imported by the job's Ray driver (service/ray_driver.py) and, by Ray, in the worker
that hosts the actor. Each run gets a new actor, so a new process: nothing of one job
(torch state, loaded sessions) leaks into the next. The actor never restarts and never
retries (max_restarts=0): a lost run is re-queued by the scheduler, counted in the job's
attempts. Its threads are pinned to PARETO_JOB_THREADS through the actor's runtime_env,
which the Ray tasks of a search's trials inherit. Two calls may run at once
(max_concurrency=2), so `cancel` reaches a running `run`.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import ray

from service.jobs.resources import actor_resources
from service.jobs.spawn import log_path, thread_env
from service.settings import Settings


@ray.remote(max_concurrency=2, max_restarts=0, max_task_retries=0)
class JobActor:
    def __init__(self) -> None:
        self._cancelled = threading.Event()

    def run(self, data_dir: str, job_id: str, values: dict[str, Any]) -> int:
        """Run the job to its end; the worker's exit code."""
        from service.settings import load_settings
        from service.worker import log_format, run_reported

        settings = load_settings(data_dir=Path(data_dir), **values)
        handler = logging.FileHandler(log_path(Path(data_dir), job_id))
        handler.setFormatter(logging.Formatter(log_format(job_id)))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(settings.log_level)
        try:
            return run_reported(Path(data_dir), job_id, settings, self._cancelled.is_set)
        finally:
            root.removeHandler(handler)
            handler.close()

    def cancel(self) -> None:
        self._cancelled.set()


def start_actor(data_dir: Path, job_id: str, settings: Settings) -> tuple[Any, str]:
    """(the actor of this run of the job, a description of where and with what)."""
    from service.store.open import open_repository

    repo = open_repository(settings, data_dir)
    try:
        job = repo.get_job(job_id)
        is_search = repo.get_search(job_id) is not None
    finally:
        repo.close()
    resources = actor_resources(job, settings, is_search)
    actor = JobActor.options(  # type: ignore[attr-defined]
        name=f"{job_id}-run{job.attempts}",
        runtime_env={"env_vars": thread_env(settings)},
        **resources.ray_options(),
    ).remote()
    return actor, f"{job_id}-run{job.attempts} ({resources.describe()})"
