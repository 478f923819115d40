"""Bearer-token authentication and scope checks on the gRPC port, before any handler runs.

The server installs `AuthInterceptor` first (outermost) when PARETO_AUTH_TOKENS_FILE is
set. It asks the process's `Guard` (service/auth/guard.py, shared with the REST port):
a call whose method needs a scope (`service.auth.scopes`) must carry the metadata
`authorization: Bearer <token>`. A refused call's handler never runs and its request is
never read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from service.auth.guard import Guard, bearer_token, unauthenticated_message

UNAUTHENTICATED_MESSAGE = unauthenticated_message("metadata")

__all__ = ["UNAUTHENTICATED_MESSAGE", "AuthInterceptor", "bearer_token"]


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


class AuthInterceptor(grpc.ServerInterceptor):
    def __init__(self, guard: Guard) -> None:
        self._guard = guard

    def intercept_service(
        self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        refused = self._guard.check(
            handler_call_details.method, handler_call_details.invocation_metadata, "metadata"
        )
        if refused is None:
            return continuation(handler_call_details)
        code = grpc.StatusCode[refused.code]
        return _refusing_handler(continuation(handler_call_details), code, str(refused))
