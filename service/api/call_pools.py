"""Calls of different kinds never share one exhaustible pool of threads.

The gRPC server is synchronous: a call holds a thread for as long as its handler runs, and
a stream whose client sends nothing holds it for as long as the client likes. So each kind
of call gets its own thread pool and its own limit (`CallKind`), and this interceptor, the
outermost one, assigns every call to its kind's pool before a thread is taken:

- `health`: health checks, on a small pool of their own; they always answer.
- `inference`: ModelInfer (also bounded by PARETO_MAX_INFLIGHT_REQUESTS, see admission).
- `management`: every other unary call (the pareto.v1 API, KServe metadata).
- `stream_infer`, `upload`, `reflection`, `watch`: each kind of stream, at most
  `PARETO_GRPC_STREAMS_PER_KIND` open at once (one thread each); more are answered
  RESOURCE_EXHAUSTED at once. A stream whose client sends requests (uploads, streaming
  inference, reflection) and then sends nothing for PARETO_GRPC_STREAM_IDLE_TIMEOUT_S is
  cancelled, so idle clients cannot hold their kind's threads for ever.

Counted in `pareto_grpc_calls_active{kind}` and `pareto_grpc_calls_refused_total{kind,
reason}` (reason `limit` or `idle`).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc

from service import metrics
from service.api.handlers import Behavior, Slot, replace_behavior, rewrap

log = logging.getLogger(__name__)

HEALTH, INFERENCE, MANAGEMENT = "health", "inference", "management"
STREAM_INFER, UPLOAD, REFLECTION, WATCH = "stream_infer", "upload", "reflection", "watch"

# Method -> kind; every method not listed is `management`.
METHOD_KINDS: Mapping[str, str] = {
    "/grpc.health.v1.Health/Check": HEALTH,
    "/grpc.health.v1.Health/Watch": WATCH,
    "/inference.GRPCInferenceService/ModelInfer": INFERENCE,
    "/inference.GRPCInferenceService/ModelStreamInfer": STREAM_INFER,
    "/pareto.v1.ModelService/UploadModel": UPLOAD,
    "/pareto.v1.DatasetService/UploadDataset": UPLOAD,
    "/pareto.v1.JobService/WatchJob": WATCH,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": REFLECTION,
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": REFLECTION,
}
HEALTH_THREADS = 2
HEALTH_QUEUE = 256  # health checks are instant: they wait for a thread rather than fail


@dataclass(frozen=True)
class CallKind:
    name: str
    threads: int
    limit: int  # calls admitted at once (running or waiting for one of `threads`)
    idle_timeout_s: float | None = None  # client streams: cancelled when idle this long


def call_kinds(
    workers: int, management_workers: int, streams_per_kind: int, idle_timeout_s: float
) -> list[CallKind]:
    """The kinds and their sizes from the settings (see the module docstring)."""
    streams = [
        CallKind(name, streams_per_kind, streams_per_kind, idle)
        for name, idle in (
            (STREAM_INFER, idle_timeout_s),
            (UPLOAD, idle_timeout_s),
            (REFLECTION, idle_timeout_s),
            (WATCH, None),  # server streams: the client is not expected to send
        )
    ]
    return [
        CallKind(HEALTH, HEALTH_THREADS, HEALTH_QUEUE),
        # Inference calls are admitted by the in-flight limiter (service/api/admission.py).
        CallKind(INFERENCE, workers, 1 << 30),
        CallKind(MANAGEMENT, management_workers, 1 << 30),
        *streams,
    ]


class _Pool:
    """One kind's threads and the count of calls admitted to them."""

    def __init__(self, kind: CallKind) -> None:
        self.kind = kind
        self.executor = futures.ThreadPoolExecutor(kind.threads, thread_name_prefix=kind.name)
        self._active = 0
        self._lock = threading.Lock()
        metrics.GRPC_CALLS_ACTIVE.labels(kind.name).set(0)

    def admit(self) -> bool:
        with self._lock:
            if self._active >= self.kind.limit:
                return False
            self._active += 1
            metrics.GRPC_CALLS_ACTIVE.labels(self.kind.name).set(self._active)
            return True

    def release(self) -> None:
        with self._lock:
            self._active -= 1
            metrics.GRPC_CALLS_ACTIVE.labels(self.kind.name).set(self._active)


class CallPools(grpc.ServerInterceptor):
    def __init__(self, kinds: list[CallKind]) -> None:
        self._pools = {kind.name: _Pool(kind) for kind in kinds}
        self._refusals = futures.ThreadPoolExecutor(2, thread_name_prefix="refuse")
        self._idle = IdleWatchdog()

    @property
    def default_pool(self) -> futures.ThreadPoolExecutor:
        """For calls no interceptor sees (unknown methods)."""
        return self._pools[MANAGEMENT].executor

    def intercept_service(
        self, continuation: Any, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        pool = self._pools[METHOD_KINDS.get(handler_call_details.method, MANAGEMENT)]
        if not pool.admit():
            metrics.GRPC_CALLS_REFUSED.labels(pool.kind.name, "limit").inc()
            return replace_behavior(handler, _refusal(pool.kind), self._refusals)
        slot = Slot(pool.release)

        def wrap(behavior: Behavior, streams: bool) -> Behavior:
            wrapped = self._wrap(behavior, streams, slot, pool)
            # gRPC never runs the behavior of a call cancelled while it waited for a
            # thread: the slot is freed when the wrapper is dropped.
            weakref.finalize(wrapped, slot.release)
            return wrapped

        return rewrap(handler, wrap, pool.executor)

    def _wrap(self, behavior: Behavior, streams: bool, slot: Slot, pool: _Pool) -> Behavior:
        idle_after = pool.kind.idle_timeout_s
        watch = self._idle

        def call(*args: Any) -> Any:
            try:
                if idle_after is None or not isinstance(args[0], Iterator):
                    return behavior(*args)
                return behavior(watch.track(args[0], args[1], idle_after, pool), *args[1:])
            finally:
                slot.release()

        def stream(*args: Any) -> Iterator[Any]:
            try:
                if idle_after is None or not isinstance(args[0], Iterator):
                    yield from behavior(*args)
                else:
                    tracked = watch.track(args[0], args[1], idle_after, pool)
                    yield from behavior(tracked, *args[1:])
            finally:
                slot.release()

        return stream if streams else call

    def close(self) -> None:
        self._idle.stop()
        self._refusals.shutdown(wait=False)
        for pool in self._pools.values():
            pool.executor.shutdown(wait=False)


def _refusal(kind: CallKind) -> Behavior:
    message = (
        f"too many {kind.name} calls at once (limit {kind.limit}, "
        "PARETO_GRPC_STREAMS_PER_KIND); retry later"
    )

    def refuse(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message)

    return refuse


class _Tracked:
    """A client stream's request iterator that records when it waits for the client."""

    def __init__(self, requests: Iterator[Any], context: grpc.ServicerContext) -> None:
        self._requests = requests
        self.context = context
        self.waiting_since: float | None = None

    def __iter__(self) -> _Tracked:
        return self

    def __next__(self) -> Any:
        self.waiting_since = time.monotonic()
        try:
            return next(self._requests)
        finally:
            self.waiting_since = None


class IdleWatchdog:
    """One thread that cancels client streams idle for longer than their kind allows."""

    def __init__(self, tick_s: float = 0.25) -> None:
        self._streams: dict[_Tracked, tuple[float, _Pool]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._tick_s = tick_s
        self._thread = threading.Thread(target=self._run, name="idle-watchdog", daemon=True)
        self._thread.start()

    def track(
        self, requests: Iterator[Any], context: grpc.ServicerContext, idle_s: float, pool: _Pool
    ) -> _Tracked:
        tracked = _Tracked(requests, context)
        with self._lock:
            self._streams[tracked] = (idle_s, pool)
        context.add_callback(lambda: self._forget(tracked))
        return tracked

    def _forget(self, tracked: _Tracked) -> None:
        with self._lock:
            self._streams.pop(tracked, None)

    def _run(self) -> None:
        while not self._stopping.wait(self._tick_s):
            now = time.monotonic()
            with self._lock:
                idle = [
                    (tracked, pool)
                    for tracked, (limit, pool) in self._streams.items()
                    if tracked.waiting_since is not None and now - tracked.waiting_since > limit
                ]
                for tracked, _ in idle:
                    del self._streams[tracked]
            for tracked, pool in idle:
                metrics.GRPC_CALLS_REFUSED.labels(pool.kind.name, "idle").inc()
                log.info(
                    "cancelled an idle %s stream (nothing received for %.0f s)",
                    pool.kind.name,
                    pool.kind.idle_timeout_s,
                )
                tracked.context.cancel()

    def stop(self) -> None:
        self._stopping.set()
