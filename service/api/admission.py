"""Bounded inference concurrency on the gRPC port: past PARETO_MAX_INFLIGHT_REQUESTS,
RESOURCE_EXHAUSTED at once.

A gRPC server interceptor over the process's one `InflightLimit`
(service/serving/admission.py), which the REST port counts against too. gRPC calls
`intercept_service` on its polling thread, before the call is queued for a worker thread,
so an inference call counts from there (waiting for a thread, then running) until its
handler returns: requests waiting for a thread can never grow past the limit. A call over
the limit is not queued behind the others: its handler only answers RESOURCE_EXHAUSTED and
runs on a small pool of its own (gRPC's `experimental_thread_pool` on the behavior). A
stream (`ModelStreamInfer`) counts as one call while it is open.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc

from service.api.handlers import Behavior, Slot, replace_behavior, rewrap
from service.serving.admission import InflightLimit

_KSERVE = "/inference.GRPCInferenceService/"
INFERENCE_METHODS = frozenset({_KSERVE + "ModelInfer", _KSERVE + "ModelStreamInfer"})


class InflightLimiter(grpc.ServerInterceptor):
    def __init__(self, limit: InflightLimit, methods: frozenset[str] = INFERENCE_METHODS) -> None:
        self._limit = limit
        self._methods = methods
        self._reject_pool = futures.ThreadPoolExecutor(2, thread_name_prefix="reject")

    @property
    def in_flight(self) -> int:
        return self._limit.in_flight

    def intercept_service(
        self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method not in self._methods:
            return handler
        if not self._limit.try_admit():
            return self._rejecting(handler)
        return self._counted(handler, Slot(self._limit.release))

    def _counted(self, handler: grpc.RpcMethodHandler, slot: Slot) -> grpc.RpcMethodHandler:
        def wrap(behavior: Behavior, streams: bool) -> Behavior:
            def call(*args: Any) -> Any:
                try:
                    return behavior(*args)
                finally:
                    slot.release()

            def stream(*args: Any) -> Iterator[Any]:
                try:
                    yield from behavior(*args)
                finally:
                    slot.release()

            wrapped = stream if streams else call
            # gRPC never runs the behavior of a call cancelled while it waited for a
            # thread, and an outer interceptor (auth) may replace it: the slot is freed
            # when it is dropped.
            weakref.finalize(wrapped, slot.release)
            return wrapped

        return rewrap(handler, wrap)

    def _rejecting(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        message = str(self._limit.refusal())

        def refuse(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message)

        return replace_behavior(handler, refuse, self._reject_pool)

    def close(self) -> None:
        self._reject_pool.shutdown(wait=False)
