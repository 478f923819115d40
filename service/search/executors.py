"""Where a search's trials run (`make_executor`), behind one small interface.

* `InlineTrials` (parallelism 1, no Ray): in the search's worker itself, one at a time,
  as before trials could run elsewhere.
* `ProcessTrials` (parallelism > 1, no Ray): a pool of `parallelism` trial processes
  beside the worker, started fresh (spawn), in the worker's process group (a cancel's
  SIGTERM reaches them and stops their trial between steps), with the worker's memory
  limit each (RLIMIT_AS is inherited) and dying with it (PR_SET_PDEATHSIG). Their
  progress comes back through a queue and the worker reports it. A trial process that
  dies breaks the pool: the trials it ran FAIL with the reason, a new pool runs the next
  ones.
* `RayTrials` (service/search/ray_trials.py, with PARETO_RAY_ADDRESS): each trial a Ray
  task with a job's resources, retried by Ray when its worker dies.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

from compressors.base import ProgressFn
from service.jobs.events import MIN_EVENT_INTERVAL_S
from service.search.outcome import CANCELLED, FAILED, TrialResult, TrialTask, execute
from service.search.trial import TrialInputs
from service.search.trial_process import TrialContext, TrialProcess


class TrialExecutor(Protocol):
    parallelism: int  # trials it runs at once

    def submit(self, task: TrialTask) -> None: ...

    def finished(self, timeout_s: float) -> list[tuple[int, TrialResult]]:
        """(trial number, result) of trials that ended, waiting up to `timeout_s` for one."""

    def cancel(self) -> None:
        """Stop the running trials (they end CANCELLED, or finish if too far along)."""

    def close(self) -> None: ...


class InlineTrials:
    """Trials in the search's worker, one at a time (run when asked for a result)."""

    parallelism = 1

    def __init__(self, inputs: Callable[[], TrialInputs]) -> None:
        self._inputs = inputs  # the worker's, built once the trials start
        self._queued: list[TrialTask] = []

    def submit(self, task: TrialTask) -> None:
        self._queued.append(task)

    def finished(self, timeout_s: float) -> list[tuple[int, TrialResult]]:
        inputs = self._inputs()
        done = [(t.number, execute(inputs, t).where("search worker")) for t in self._queued]
        self._queued.clear()
        return done

    def cancel(self) -> None:
        self._queued.clear()

    def close(self) -> None:
        return None


# -- trial processes ---------------------------------------------------------------------

_process: TrialProcess | None = None
_stop = threading.Event()


TrialProgress = Callable[[int, str, dict[str, float]], None]  # (trial number, message, metrics)


class _Reporter:
    """A trial process's progress, put on the worker's queue at most every
    MIN_EVENT_INTERVAL_S (a full queue drops it: progress is not worth waiting for)."""

    def __init__(self, events: Any) -> None:
        self._events = events
        self._last = -float("inf")

    def for_trial(self, number: int) -> ProgressFn:
        def progress(fraction: float, message: str, metrics: dict[str, float]) -> None:
            now = time.monotonic()
            if now - self._last >= MIN_EVENT_INTERVAL_S:
                self._last = now
                with contextlib.suppress(queue.Full):
                    self._events.put_nowait((number, message, dict(metrics)))

        return progress


def _start_process(context: TrialContext, parent_pid: int, events: Any) -> None:
    """Pool initializer: die with the worker, SIGTERM = stop the trial, open the store,
    import what trials need."""
    from service.jobs.process_life import die_with_parent

    global _process
    die_with_parent(parent_pid)
    signal.signal(signal.SIGTERM, lambda signum, frame: _stop.set())
    _process = TrialProcess(context, _stop.is_set, _Reporter(events).for_trial)
    warm_up()


WARM_MODULES = (  # what trials import on first use (seconds of CPU each, measured)
    "onnxruntime.quantization",
    "onnxruntime.tools.symbolic_shape_infer",
    "torch",
    "torch._dynamo",
)


def warm_up() -> None:
    """Import now what trials import on first use: a trial process starts beside the
    worker's own set-up (its inputs, the study), so these imports overlap with it instead
    of lengthening each process's first trial while the worker waits (profiled: torch and
    its dynamo took most of the first trials' seconds). Best effort: a module that is not
    installed is imported (and refused) where a technique needs it."""
    import importlib

    for name in WARM_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _ready() -> None:
    return None


def _run_in_process(task: TrialTask) -> TrialResult:
    if _process is None:
        raise RuntimeError("trial process not initialized")
    return _process.run(task).where(f"process {os.getpid()}")


class ProcessTrials:
    EVENTS = 1000  # progress messages waiting for the worker, at most

    def __init__(self, context: TrialContext, parallelism: int, progress: TrialProgress) -> None:
        self.parallelism = parallelism
        self._context = context
        self._progress = progress
        self._spawn = multiprocessing.get_context("spawn")
        self._events = self._spawn.Queue(self.EVENTS)
        self._pool: cf.ProcessPoolExecutor | None = None
        self._futures: dict[cf.Future[TrialResult], int] = {}
        for _ in range(parallelism):  # all the processes start (load the inputs) now: a
            self._executor().submit(_ready)  # spawn pool starts one per submit, on demand

    def _executor(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(
                self.parallelism,
                mp_context=self._spawn,
                initializer=_start_process,
                initargs=(self._context, os.getpid(), self._events),
            )
        return self._pool

    def submit(self, task: TrialTask) -> None:
        try:
            future = self._executor().submit(_run_in_process, task)
        except BrokenProcessPool:  # broke before its running trials reported it
            self._discard_pool()
            future = self._executor().submit(_run_in_process, task)
        self._futures[future] = task.number

    def finished(self, timeout_s: float) -> list[tuple[int, TrialResult]]:
        done, _ = cf.wait(list(self._futures), timeout_s, return_when=cf.FIRST_COMPLETED)
        self._report()
        results = []
        for future in done:
            number = self._futures.pop(future)
            try:
                results.append((number, future.result()))
            except BrokenProcessPool as exc:  # every running trial learns it at once
                results.append((number, TrialResult(FAILED, message=f"its process died: {exc}")))
                self._discard_pool()
            except cf.CancelledError:
                results.append((number, TrialResult(CANCELLED)))
        return results

    def _report(self) -> None:
        """Hand the progress the trial processes sent to the worker's events."""
        while True:
            try:
                number, message, metrics = self._events.get_nowait()
            except queue.Empty:
                return
            self._progress(number, message, metrics)

    def _discard_pool(self) -> None:
        """A broken pool runs nothing more: the next trials start a new one."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def cancel(self) -> None:
        """Trials not started yet are dropped; running ones got the cancel's SIGTERM with
        the worker (one process group) and stop between steps."""
        for future in self._futures:
            future.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=not self._futures, cancel_futures=True)
            self._pool = None
            self._events.cancel_join_thread()  # what is left unread is progress nobody awaits


def make_executor(
    inputs: Callable[[], TrialInputs],
    context: TrialContext,
    parallelism: int,
    on_ray: bool,
    progress: TrialProgress,
) -> TrialExecutor:
    """Ray tasks with PARETO_RAY_ADDRESS; else the worker itself or trial processes.
    `progress` reports what trial processes say (the others report it themselves)."""
    if on_ray:
        from service.search.ray_trials import RayTrials

        return RayTrials(context, parallelism)
    if parallelism <= 1:
        return InlineTrials(inputs)
    return ProcessTrials(context, parallelism, progress)
