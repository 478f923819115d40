"""Per model version counts and cumulative times, the fields Triton's ModelStatistics has.

`inference_count` counts inferences (rows of batched requests), `execution_count` runs
of the model (a batch is one run); `success`/`fail` the requests and their whole
duration; `queue` the time requests waited before their run began; `compute_input` /
`compute_infer` / `compute_output` the time to prepare a run's inputs, to run it and to
take a request's outputs out (a batched request counts its batch's times, as in Triton);
`batches` the same three per batch size.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.ns += int(seconds * 1e9)


@dataclass
class BatchStats:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass
class ModelStats:
    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    batches: dict[int, BatchStats] = field(default_factory=lambda: defaultdict(BatchStats))


@dataclass(frozen=True)
class RequestTimes:
    """One finished request, in seconds: the whole, waiting, and its run's three parts."""

    total_s: float
    queue_s: float
    prepare_s: float
    run_s: float
    split_s: float


class Statistics:
    """Thread-safe counters keyed by (model, version): version is "1", "2", ... or a
    variant id."""

    def __init__(self) -> None:
        self._by_model: dict[tuple[str, str], ModelStats] = defaultdict(ModelStats)
        self._lock = threading.Lock()

    def succeeded(self, key: tuple[str, str], rows: int, times: RequestTimes) -> None:
        with self._lock:
            stats = self._by_model[key]
            stats.last_inference_ms = int(time.time() * 1000)
            stats.inference_count += rows
            stats.success.add(times.total_s)
            stats.queue.add(times.queue_s)
            stats.compute_input.add(times.prepare_s)
            stats.compute_infer.add(times.run_s)
            stats.compute_output.add(times.split_s)

    def failed(self, key: tuple[str, str], seconds: float) -> None:
        with self._lock:
            self._by_model[key].fail.add(seconds)

    def ran(
        self, key: tuple[str, str], rows: int, prepare_s: float, run_s: float, split_s: float
    ) -> None:
        """One run of the model on a batch of `rows`."""
        with self._lock:
            stats = self._by_model[key]
            stats.execution_count += 1
            batch = stats.batches[rows]
            batch.compute_input.add(prepare_s)
            batch.compute_infer.add(run_s)
            batch.compute_output.add(split_s)

    def snapshot(self) -> dict[tuple[str, str], ModelStats]:
        """A copy of every model's counters."""
        import copy

        with self._lock:
            return copy.deepcopy(dict(self._by_model))
