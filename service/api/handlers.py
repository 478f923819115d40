"""Wrapping the behaviors of gRPC method handlers, the one way every interceptor does it.

grpc calls a behavior as `behavior(request_or_iterator, context)`, or, for a behavior
marked `experimental_non_blocking` (grpc_health's Watch), with a third argument (the
response callback), and then the behavior returns at once. `experimental_thread_pool` on a
behavior picks the pool it runs on. A wrapper must keep both marks, or grpc calls it the
wrong way (a two-argument wrapper of a non-blocking behavior fails every call) or on the
wrong pool.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc

KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
Behavior = Callable[..., Any]
# (the behavior, whether it returns a response iterator) -> its wrapper
Wrap = Callable[[Behavior, bool], Behavior]


def kind_of(handler: grpc.RpcMethodHandler) -> str:
    return next(kind for kind in KINDS if getattr(handler, kind) is not None)


def returns_iterator(behavior: Behavior, kind: str) -> bool:
    """Whether calling `behavior` gives a response iterator (a blocking server stream)."""
    return kind.endswith("_stream") and not getattr(behavior, "experimental_non_blocking", False)


def rewrap(
    handler: grpc.RpcMethodHandler,
    wrap: Wrap,
    pool: futures.ThreadPoolExecutor | None = None,
) -> grpc.RpcMethodHandler:
    """`handler` with its behavior replaced by `wrap(behavior, returns_iterator)`, keeping
    the non-blocking mark and the behavior's own pool (else `pool`)."""
    kind = kind_of(handler)
    behavior = getattr(handler, kind)
    wrapped = wrap(behavior, returns_iterator(behavior, kind))
    if getattr(behavior, "experimental_non_blocking", False):
        wrapped.experimental_non_blocking = True  # type: ignore[attr-defined]
    chosen = getattr(behavior, "experimental_thread_pool", None) or pool
    if chosen is not None:
        wrapped.experimental_thread_pool = chosen  # type: ignore[attr-defined]
    return handler._replace(**{kind: wrapped})


def replace_behavior(
    handler: grpc.RpcMethodHandler, behavior: Behavior, pool: futures.ThreadPoolExecutor
) -> grpc.RpcMethodHandler:
    """`handler` answered by `behavior` instead (a refusal), on `pool`."""
    kind = kind_of(handler)
    behavior.experimental_thread_pool = pool  # type: ignore[attr-defined]
    return handler._replace(**{kind: behavior})


class Slot:
    """An admitted call's place somewhere; `release` runs once, however often it is called
    (the behavior's end, and the wrapper being dropped unrun)."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            release, self._release = self._release, None
        if release is not None:
            release()
