"""The one place where errors become HTTP statuses on the REST port, as KServe v2 JSON
errors `{"error": "message"}`.

`HTTP_STATUS` maps every canonical code name of `pareto_core.errors` (the table beside
`service/api/error_interceptor.GRPC_STATUS`; a test checks both are complete). Codes follow
Triton's REST server where it has one (FAILED_PRECONDITION is 400 there). A few errors of
HTTP itself carry a more precise status of their own (`http_status`: 405, 408, 413).
Anything that is
not a `ParetoError` is a bug: logged with its traceback and answered 500 with a generic
message, so internals never leak.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from http import HTTPStatus

from pareto_core.errors import DeadlineExceeded, ParetoError, ResourceExhausted
from service.api.error_interceptor import bounded, redacted

log = logging.getLogger(__name__)

HTTP_STATUS: dict[str, int] = {
    "INVALID_ARGUMENT": HTTPStatus.BAD_REQUEST,
    "FAILED_PRECONDITION": HTTPStatus.BAD_REQUEST,
    "NOT_FOUND": HTTPStatus.NOT_FOUND,
    "ALREADY_EXISTS": HTTPStatus.CONFLICT,
    "RESOURCE_EXHAUSTED": HTTPStatus.TOO_MANY_REQUESTS,
    "UNAUTHENTICATED": HTTPStatus.UNAUTHORIZED,
    "PERMISSION_DENIED": HTTPStatus.FORBIDDEN,
    "UNAVAILABLE": HTTPStatus.SERVICE_UNAVAILABLE,
    "DEADLINE_EXCEEDED": HTTPStatus.GATEWAY_TIMEOUT,
    "CANCELLED": 499,  # the client closed the request (no standard status; nginx's)
    "INTERNAL": HTTPStatus.INTERNAL_SERVER_ERROR,
}


class PayloadTooLarge(ResourceExhausted):
    """A body over PARETO_HTTP_MAX_BODY_BYTES: 413, which clients do not retry as they
    would a 429."""

    http_status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class RequestTimeout(DeadlineExceeded):
    """A client that stopped sending its body."""

    http_status = HTTPStatus.REQUEST_TIMEOUT


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def http_error(
    exc: BaseException, route: str, hidden: Mapping[str, str] | None = None
) -> tuple[int, bytes]:
    """(status, KServe JSON error body) for `exc` raised while answering `route`."""
    if isinstance(exc, ParetoError):
        status = getattr(exc, "http_status", None) or HTTP_STATUS[exc.code]
        return status, error_body(bounded(redacted(str(exc), hidden or {})))
    log.exception("unhandled error in %s", route, exc_info=exc)
    return HTTPStatus.INTERNAL_SERVER_ERROR, error_body(
        f"internal error in {route}; see server log"
    )
