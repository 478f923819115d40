"""A search's trials as Ray tasks (PARETO_RAY_ADDRESS), from the search's own actor.

Each trial is one task, `run_trial_task`, placed with a job's resources
(service/jobs/resources.py: PARETO_JOB_THREADS CPUs, a GPU for a CUDA evaluation runtime,
PARETO_JOB_MEMORY_LIMIT_BYTES of memory). Ray reuses its worker processes across the
tasks of one driver, so a worker builds the search's inputs once (`TrialProcess`) and
keeps them for its next trials. When a task's worker dies (killed, its node lost, Ray's
memory monitor), Ray runs the task again, up to PARETO_JOB_MAX_ATTEMPTS runs in all (its
`max_retries`); after the last the trial FAILS with Ray's reason and the search goes on.
Exceptions of the trial itself are never retried: `execute` turns them into results.

The tasks are owned by the search's actor: when it dies, Ray kills them.
"""

from __future__ import annotations

import os
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError, TaskCancelledError

from service.jobs.ray_launcher import describe_error
from service.jobs.resources import run_resources
from service.search.outcome import CANCELLED, FAILED, TrialResult, TrialTask
from service.search.trial_process import TrialContext, TrialProcess, count_run, trial_settings

_processes: dict[tuple[str, int], TrialProcess] = {}  # this worker's, by (job, run)


@ray.remote
def run_trial_task(context: TrialContext, task: TrialTask) -> TrialResult:
    run = count_run(context, task.number)
    key = (context.job_id, context.attempt)
    if key not in _processes:
        for old in _processes.values():  # an earlier run's: its job went on elsewhere
            old.close()
        _processes.clear()
        _processes[key] = TrialProcess(context, lambda: False)
    process = _processes[key]
    node = ray.get_runtime_context().get_node_id()[:8]
    where = f"ray {ray.util.get_node_ip_address()} node {node} pid {os.getpid()}"
    return process.run(task).where(where + (f" run {run}" if run > 1 else ""))


class RayTrials:
    def __init__(self, context: TrialContext, parallelism: int) -> None:
        from service.store.open import open_repository

        self.parallelism = parallelism
        self._context = context
        settings = trial_settings(context)
        repo = open_repository(settings, context.data_dir)
        try:
            job = repo.get_job(context.job_id)
        finally:
            repo.close()
        self._attempts = settings.job_max_attempts
        self._options: dict[str, Any] = {
            **run_resources(job, settings).ray_options(),
            "max_retries": self._attempts - 1,
            "retry_exceptions": False,
        }
        self._refs: dict[Any, int] = {}

    def submit(self, task: TrialTask) -> None:
        ref = run_trial_task.options(**self._options).remote(self._context, task)
        self._refs[ref] = task.number

    def finished(self, timeout_s: float) -> list[tuple[int, TrialResult]]:
        if not self._refs:
            return []
        done, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout_s)
        return [(self._refs.pop(ref), self._result(ref)) for ref in done]

    def _result(self, ref: Any) -> TrialResult:
        try:
            result: TrialResult = ray.get(ref)
            return result
        except TaskCancelledError:
            return TrialResult(CANCELLED)
        except RayTaskError as exc:  # the task itself raised (before the trial ran)
            return TrialResult(FAILED, message=f"its Ray task failed: {exc.cause!r}")
        except RayError as exc:  # the worker died in each of its runs
            runs = f"{self._attempts} run(s), PARETO_JOB_MAX_ATTEMPTS={self._attempts}"
            why = f"its Ray worker died ({runs}): {describe_error(exc)}"
            return TrialResult(FAILED, message=why)

    def cancel(self) -> None:
        for ref in self._refs:
            ray.cancel(ref)

    def close(self) -> None:
        self.cancel()
