"""Shadow traffic: copies of answered requests run on another target, off the critical path.

The request thread only tries `put_nowait` on a bounded queue: when the queue is full the
copy is dropped and counted (`pareto_shadow_dropped_total`), so a primary never waits for
a shadow. Worker threads run the copies and compare both answers (top-1, cosine, max abs
diff); the comparison is recorded for both targets. Canary checks use the same queue to
run the baseline on requests the canary answered.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pareto_core.errors import ParetoError
from service import metrics
from service.deployments.compare import compare
from service.serving.executor import Executor

if TYPE_CHECKING:
    from service.deployments.targets import ServingTarget

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShadowJob:
    run: ServingTarget  # the target that runs the copy
    answered: ServingTarget  # who answered the client
    inputs: dict[str, np.ndarray]
    wanted: list[str] | None
    outputs: dict[str, np.ndarray]  # the answer the client got


class ShadowQueue:
    def __init__(self, executor: Executor, size: int, workers: int) -> None:
        self._executor = executor
        self._queue: queue.Queue[ShadowJob | None] = queue.Queue(maxsize=size)
        # Whether a target is still deployed: copies for removed ones are skipped, so a
        # closed session is never loaded again by a late copy. Set by the manager.
        self.is_live: Callable[[ServingTarget], bool] = lambda target: True
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, name=f"shadow-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, job: ShadowJob) -> bool:
        """Queue a copy without ever blocking; False (and counted) when it was dropped."""
        try:
            self._queue.put_nowait(job)
            return True
        except queue.Full:
            metrics.SHADOW_DROPPED.labels(*job.run.labels).inc()
            job.run.stats.record_drop()
            return False

    def pending(self) -> int:
        return self._queue.qsize()

    def _work(self) -> None:
        while not self._stopping.is_set():
            job = self._queue.get()
            if job is None:
                return
            try:
                self._run(job)
            except Exception:  # a copy must never take the worker down
                log.exception("shadow copy on %s failed", job.run.labels)

    def _run(self, job: ShadowJob) -> None:
        if not self.is_live(job.run):
            return
        counted = job.run.is_shadow  # canary checks rerun a primary: not a request of its own
        started = time.perf_counter()
        try:
            result = self._executor.run(
                job.run.target, lambda signature: (job.inputs, job.wanted), counted=False
            )
        except ParetoError as exc:
            if counted:
                self._record(job.run, time.perf_counter() - started, exc.code)
            log.debug("shadow copy on %s: %s", job.run.labels, exc)
            return
        if counted:
            self._record(job.run, time.perf_counter() - started, "OK")
        order = [t.name for t in result.servable.signature.outputs]
        agreement = compare(job.outputs, result.outputs, order)
        for target in (job.answered, job.run):
            target.stats.record_comparison(agreement.top1, agreement.cosine, agreement.max_abs_diff)
            metrics.SHADOW_AGREEMENT.labels(*target.labels, "top1").observe(agreement.top1)
            metrics.SHADOW_AGREEMENT.labels(*target.labels, "cosine").observe(agreement.cosine)
            metrics.SHADOW_MAX_ABS_DIFF.labels(*target.labels).observe(agreement.max_abs_diff)

    @staticmethod
    def _record(target: ServingTarget, seconds: float, code: str) -> None:
        metrics.ENDPOINT_REQUESTS.labels(*target.labels, code).inc()
        if code == "OK":
            metrics.ENDPOINT_DURATION.labels(*target.labels).observe(seconds)
        target.stats.record(seconds, code == "OK")

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the workers; copies still queued are abandoned."""
        self._stopping.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        for _ in self._threads:
            try:
                self._queue.put(None, timeout=timeout_s)
            except queue.Full:
                break
        for thread in self._threads:
            thread.join(timeout_s)
