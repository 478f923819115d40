"""The one place where exceptions become gRPC status codes.

`ParetoError` subclasses carry a canonical error code name and a caller-facing message;
`GRPC_STATUS` maps each name to its gRPC status. Anything else is a bug: it is logged with
its traceback and answered with INTERNAL and a generic message, so internals never leak
to callers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grpc

from pareto_core.errors import CODES, ParetoError
from service.api.handlers import Behavior, Wrap, rewrap

log = logging.getLogger(__name__)

# Status messages travel in trailing metadata, which clients cap (16 KiB by default): a
# message echoing a huge user value would reach the caller as RESOURCE_EXHAUSTED "Stream
# removed" instead of its own code (found by tests/fuzz). Longer messages are cut.
MAX_MESSAGE_CHARS = 2000


GRPC_STATUS: dict[str, grpc.StatusCode] = {code: grpc.StatusCode[code] for code in CODES}


def grpc_status(exc: ParetoError) -> grpc.StatusCode:
    return GRPC_STATUS[exc.code]


def bounded(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return f"{message[:MAX_MESSAGE_CHARS]}... ({len(message) - MAX_MESSAGE_CHARS} more characters)"


def redacted(message: str, hidden: Mapping[str, str]) -> str:
    """`message` with each server path of `hidden` replaced by its placeholder."""
    for path, placeholder in hidden.items():
        message = message.replace(path, placeholder)
    return message


def abort_with(
    context: grpc.ServicerContext,
    exc: BaseException,
    method: str,
    hidden: Mapping[str, str] | None = None,
) -> None:
    """Abort the call with the status code that belongs to `exc` (raises)."""
    if isinstance(exc, ParetoError):
        context.abort(grpc_status(exc), bounded(redacted(str(exc), hidden or {})))
    log.exception("unhandled error in %s", method, exc_info=exc)
    context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}; see server log")


def _around(method: str, hidden: Mapping[str, str]) -> Wrap:
    def wrap(behavior: Behavior, streams: bool) -> Behavior:
        def call(*args: Any) -> Any:  # (request, context[, response callback])
            try:
                return behavior(*args)
            except Exception as exc:
                _handle(exc, args[1], method, hidden)
                return None

        def stream(*args: Any) -> Iterator[Any]:
            try:
                yield from behavior(*args)
            except Exception as exc:
                _handle(exc, args[1], method, hidden)

        return stream if streams else call

    return wrap


def _handle(
    exc: Exception, context: grpc.ServicerContext, method: str, hidden: Mapping[str, str]
) -> None:
    """Re-raise an abort, let a call whose client went away end quietly (an INFO line, no
    traceback), answer anything else with its status (raises)."""
    if _already_aborted(exc, context):
        raise exc
    if not context.is_active():
        log.info("%s: the client went away (%s)", method, type(exc).__name__)
        return
    abort_with(context, exc, method, hidden)


def _already_aborted(exc: Exception, context: grpc.ServicerContext) -> bool:
    # context.abort() sets the status and then raises a bare Exception(); let it through.
    return type(exc) is Exception and context.code() is not None


class ErrorInterceptor(grpc.ServerInterceptor):
    """Maps exceptions raised by any servicer to status codes. `hidden`: server paths
    (the data directory) that messages must not show, each with its placeholder."""

    def __init__(self, hidden: Mapping[str, str] | None = None) -> None:
        # Longest first, so that a path inside another is not half replaced.
        items = sorted((hidden or {}).items(), key=lambda item: -len(item[0]))
        self._hidden = dict(items)

    def intercept_service(
        self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return rewrap(handler, _around(handler_call_details.method, self._hidden))
