"""The one place where exceptions become gRPC status codes.

`ParetoError` subclasses carry a canonical error code name and a caller-facing message;
`GRPC_STATUS` maps each name to its gRPC status. Anything else is a bug: it is logged with
its traceback and answered with INTERNAL and a generic message, so internals never leak
to callers.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from pareto_core.errors import CODES, ParetoError

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


def abort_with(context: grpc.ServicerContext, exc: BaseException, method: str) -> None:
    """Abort the call with the status code that belongs to `exc` (raises)."""
    if isinstance(exc, ParetoError):
        context.abort(grpc_status(exc), bounded(str(exc)))
    log.exception("unhandled error in %s", method, exc_info=exc)
    context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}; see server log")


def _wrap_unary(behavior: Callable, method: str) -> Callable:
    @functools.wraps(behavior)
    def wrapper(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
        try:
            return behavior(request_or_iterator, context)
        except Exception as exc:
            if _already_aborted(exc, context):
                raise
            abort_with(context, exc, method)

    return wrapper


def _wrap_stream(behavior: Callable, method: str) -> Callable:
    @functools.wraps(behavior)
    def wrapper(request_or_iterator: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from behavior(request_or_iterator, context)
        except Exception as exc:
            if _already_aborted(exc, context):
                raise
            abort_with(context, exc, method)

    return wrapper


def _already_aborted(exc: Exception, context: grpc.ServicerContext) -> bool:
    # context.abort() sets the status and then raises a bare Exception(); let it through.
    return type(exc) is Exception and context.code() is not None


class ErrorInterceptor(grpc.ServerInterceptor):
    """Maps exceptions raised by any servicer to status codes."""

    def intercept_service(
        self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if handler.unary_unary:
            return handler._replace(unary_unary=_wrap_unary(handler.unary_unary, method))
        if handler.stream_unary:
            return handler._replace(stream_unary=_wrap_unary(handler.stream_unary, method))
        if handler.unary_stream:
            return handler._replace(unary_stream=_wrap_stream(handler.unary_stream, method))
        return handler._replace(stream_stream=_wrap_stream(handler.stream_stream, method))
