"""Bearer-token authentication and scope checks, before any handler runs.

The server installs `AuthInterceptor` first (outermost) when PARETO_AUTH_TOKENS_FILE is
set. A call whose method needs a scope (`service.auth.scopes`) must carry the metadata
`authorization: Bearer <token>`: no or an unknown token is UNAUTHENTICATED, a token
without the scope PERMISSION_DENIED. The messages say only that; the handler never runs
and the request is never read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from service.auth.scopes import OPEN, allows, required_scope
from service.auth.tokens import TokenStore

log = logging.getLogger(__name__)
REFUSAL_LOG_INTERVAL_S = 10.0

UNAUTHENTICATED_MESSAGE = "missing or invalid bearer token (metadata 'authorization: Bearer ...')"
_BEARER = "bearer "


def bearer_token(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    """The token of the first `authorization` metadata entry, if it is a Bearer one."""
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        if text[: len(_BEARER)].lower() != _BEARER:
            return None
        return text[len(_BEARER) :].strip()
    return None


def _refusal(code: grpc.StatusCode, message: str) -> Callable[..., Any]:
    def refuse(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)

    return refuse


def _refusing_handler(
    handler: grpc.RpcMethodHandler | None, code: grpc.StatusCode, message: str
) -> grpc.RpcMethodHandler:
    refuse = _refusal(code, message)
    if handler is None:  # unknown method: refuse without revealing that it is unknown
        return grpc.stream_stream_rpc_method_handler(refuse)
    for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
        if getattr(handler, kind):
            return handler._replace(**{kind: refuse})
    return grpc.stream_stream_rpc_method_handler(refuse)


class ThrottledLog:
    """At most one INFO line per `interval_s`; the lines held back meanwhile are counted in
    the next one, so a client hammering with a bad token cannot flood the log."""

    def __init__(self, interval_s: float = REFUSAL_LOG_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._next = 0.0
        self._held = 0
        self._lock = threading.Lock()

    def info(self, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                self._held += 1
                return
            held, self._held, self._next = self._held, 0, now + self._interval_s
        suffix = f" (and {held} more refusals in the last {self._interval_s:.0f} s)" if held else ""
        log.info(message + suffix, *args)


class AuthInterceptor(grpc.ServerInterceptor):
    def __init__(self, tokens: TokenStore) -> None:
        self._tokens = tokens
        self._refusals = ThrottledLog()

    def intercept_service(
        self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        needed = required_scope(method)
        if needed == OPEN:
            return continuation(handler_call_details)
        token = bearer_token(handler_call_details.invocation_metadata)
        principal = self._tokens.authenticate(token) if token else None
        if principal is None:
            self._refusals.info("auth: refused %s: missing or unknown token", method)
            code, message = grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE
        elif not allows(principal.scopes, needed):
            self._refusals.info(
                "auth: refused %s to %r: needs scope %r", method, principal.name, needed
            )
            code = grpc.StatusCode.PERMISSION_DENIED
            message = f"this token lacks the {needed!r} scope this call needs"
        else:
            return continuation(handler_call_details)
        return _refusing_handler(continuation(handler_call_details), code, message)
