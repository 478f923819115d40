"""Dynamic batching of one loaded model: requests that arrive together run as one batch.

Each request waits in a FIFO queue (at most `max_queue_size`; more are RESOURCE_EXHAUSTED).
`instances` threads (runs of the model at once) each take the oldest request and every
later one that can share its run: the same dtypes and non-batch dims (inputs listed in
`pad_inputs` may differ there: they are padded with zeros to the largest), up to
`max_batch_size` rows, stopping early at
a preferred batch size, waiting at most `max_queue_delay_us` after the oldest arrived
(0: only what is already waiting). Requests that cannot share wait for a later batch,
in order. The batch's inputs are concatenated on the first axis, run once, and each
request gets exactly its own rows of each output it asked for. A request whose deadline
passes while it waits is answered DEADLINE_EXCEEDED without running; if a batch fails,
its requests run one by one, so one bad request fails alone. Without a queue delay, a
request that finds the queue empty and an instance free runs at once on its own thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pareto_core.errors import DeadlineExceeded, ParetoError, ResourceExhausted, Unavailable
from runtimes.base import Session
from service.serving.config import BatchingConfig

Inputs = dict[str, np.ndarray]
Outputs = dict[str, np.ndarray]


@dataclass
class Timing:
    """Where one request's time went (seconds, `time.perf_counter` based)."""

    started: float = 0.0  # its batch began (queue time ends here)
    prepare_s: float = 0.0  # concatenating and padding its batch
    run_s: float = 0.0  # the runtime's run of its batch
    split_s: float = 0.0  # slicing its rows out
    batch_rows: int = 0  # rows of the batch it ran in


@dataclass(eq=False)
class _Request:
    inputs: Inputs
    wanted: list[str] | None
    rows: int
    key: tuple[object, ...]
    deadline: float | None  # time.monotonic()
    arrived: float  # time.monotonic()
    on_start: Callable[[], None]  # called when its run begins (the queue time ends)
    done: threading.Event = field(default_factory=threading.Event)
    outputs: Outputs | None = None
    error: BaseException | None = None
    timing: Timing = field(default_factory=Timing)
    taken: bool = False


class Batcher:
    def __init__(
        self,
        session: Session,
        config: BatchingConfig,
        on_batch: Callable[[int, float, float, float], None] = lambda rows, p, r, s: None,
        name: str = "batcher",
        instances: int = 1,
    ) -> None:
        """`instances`: runs of the model at once (Triton's instance count)."""
        self._session = session
        self.config = config
        self._on_batch = on_batch
        self._queue: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._instances = instances
        self._running = 0  # runs in progress, inline ones included
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{k}", daemon=True)
            for k in range(instances)
        ]
        for thread in self._threads:
            thread.start()

    def submit(
        self,
        inputs: Inputs,
        wanted: list[str] | None,
        deadline: float | None = None,
        on_start: Callable[[], None] = lambda: None,
    ) -> tuple[Outputs, Timing]:
        """Run `inputs` in some batch; blocks until its rows are back. `on_start` is called
        when the batch it is in begins to run.

        With no queue delay, a request that finds the queue empty and an instance free
        runs at once on the caller's thread: batching costs nothing at low load, and
        batches form from the requests that arrive while every instance is busy."""
        rows = _rows(inputs)
        key = _compatibility(inputs, set(self.config.pad_inputs))
        request = _Request(inputs, wanted, rows, key, deadline, time.monotonic(), on_start)
        if rows > self.config.max_batch_size:  # too big to share a run: run it alone
            self._run([request])
            return self._result(request)
        with self._cond:
            if self._closed:
                raise Unavailable("the model is being unloaded; retry")
            inline = (
                not self._queue
                and self._running < self._instances
                and self.config.max_queue_delay_us == 0
            )
            if inline:
                self._running += 1
                request.taken = True
            elif len(self._queue) >= self.config.max_queue_size:
                raise ResourceExhausted(
                    f"the model's batching queue is full ({self.config.max_queue_size} "
                    "requests waiting, max_queue_size); retry later"
                )
            else:
                self._queue.append(request)
                self._cond.notify_all()
        if inline:
            self._run_counted([request])
        else:
            self._wait(request)
        return self._result(request)

    def _wait(self, request: _Request) -> None:
        timeout = None if request.deadline is None else request.deadline - time.monotonic()
        if request.done.wait(max(0.0, timeout) if timeout is not None else None):
            return
        with self._cond:  # its deadline passed: withdraw it unless its batch has begun
            if not request.taken:
                self._queue.remove(request)
                request.error = DeadlineExceeded("the request's deadline passed in the queue")
                return
        request.done.wait()

    @staticmethod
    def _result(request: _Request) -> tuple[Outputs, Timing]:
        if request.error is not None:
            raise request.error
        assert request.outputs is not None
        return request.outputs, request.timing

    # -- the batching threads ----------------------------------------------------------

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run_counted(batch)

    def _run_counted(self, batch: list[_Request]) -> None:
        """Run a batch that holds one of the instances, then free it."""
        try:
            self._run(batch)
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()

    def _next_batch(self) -> list[_Request] | None:
        """The next batch to run (None once closed and empty), taken off the queue; it
        holds an instance until `_run_counted` frees it."""
        config = self.config
        with self._cond:
            while True:  # requests may be withdrawn (deadlines) while it waits
                while not self._queue or self._running >= self._instances:
                    if self._closed and not self._queue:
                        return None
                    self._cond.wait()
                batch = self._compatible()
                rows = sum(r.rows for r in batch)
                full = rows >= config.max_batch_size or rows in config.preferred_batch_sizes
                window_ends = self._queue[0].arrived + config.max_queue_delay_us / 1e6
                left = window_ends - time.monotonic()
                if full or left <= 0 or self._closed:
                    break
                self._cond.wait(left)
            for request in batch:
                self._queue.remove(request)
                request.taken = True
            self._running += 1
        return self._drop_expired(batch)

    def _compatible(self) -> list[_Request]:
        """The oldest request and the later ones that fit its run, in arrival order."""
        first = self._queue[0]
        batch, rows = [first], first.rows
        for request in list(self._queue)[1:]:
            if request.key == first.key and rows + request.rows <= self.config.max_batch_size:
                batch.append(request)
                rows += request.rows
        return batch

    @staticmethod
    def _drop_expired(batch: list[_Request]) -> list[_Request]:
        now, kept = time.monotonic(), []
        for request in batch:
            if request.deadline is not None and now > request.deadline:
                request.error = DeadlineExceeded("the request's deadline passed in the queue")
                request.done.set()
            else:
                kept.append(request)
        return kept

    def _run(self, batch: list[_Request]) -> None:
        if not batch:
            return
        try:
            self._run_together(batch)
        except ParetoError as exc:
            if len(batch) == 1:
                batch[0].error = exc
            else:  # find the request that broke it: each runs alone
                for request in batch:
                    self._run([request])
        except Exception as exc:  # a runtime's own error: each request gets it
            for request in batch:
                request.error = exc
        finally:
            for request in batch:
                request.done.set()

    def _run_together(self, batch: list[_Request]) -> None:
        started = time.perf_counter()
        inputs = batch[0].inputs if len(batch) == 1 else _concatenate(batch)
        wanted = _union_wanted(batch)
        for request in batch:
            request.on_start()
        prepared = time.perf_counter()
        outputs = self._session.run(inputs, wanted)
        ran = time.perf_counter()
        rows = sum(r.rows for r in batch)
        offset = 0
        for request in batch:
            names = request.wanted or list(outputs)
            end = offset + request.rows
            request.outputs = {n: outputs[n][offset:end] for n in names}
            offset = end
        split = time.perf_counter()
        times = (prepared - started, ran - prepared, split - ran)
        self._on_batch(rows, *times)
        for request in batch:
            request.timing = Timing(started, *times, rows)

    def close(self) -> None:
        """Stop once the queued requests have run (unloading drains before this)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)


def _rows(inputs: Inputs) -> int:
    return int(next(iter(inputs.values())).shape[0]) if inputs else 0


def _compatibility(inputs: Inputs, padded: set[str]) -> tuple[object, ...]:
    """What requests sharing a run must agree on: per input, its dtype and its non-batch
    dims (only the rank, for an input that may be padded)."""
    return tuple(
        (name, str(array.dtype), array.ndim if name in padded else array.shape[1:])
        for name, array in sorted(inputs.items())
    )


def _concatenate(batch: list[_Request]) -> Inputs:
    joined = {}
    for name in batch[0].inputs:
        arrays = [r.inputs[name] for r in batch]
        largest = np.max([a.shape[1:] for a in arrays], axis=0) if arrays[0].ndim > 1 else ()
        padded = [_pad_to(a, tuple(int(d) for d in largest)) for a in arrays]
        joined[name] = np.concatenate(padded, axis=0)
    return joined


def _pad_to(array: np.ndarray, dims: tuple[int, ...]) -> np.ndarray:
    if array.shape[1:] == dims:
        return array
    widths = [(0, 0)] + [(0, want - have) for have, want in zip(array.shape[1:], dims, strict=True)]
    return np.pad(array, widths)


def _union_wanted(batch: list[_Request]) -> list[str] | None:
    if any(r.wanted is None for r in batch):
        return None
    return sorted({name for r in batch for name in r.wanted or ()})
