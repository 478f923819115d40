"""Who may make which call: bearer token and scope checks, free of any wire protocol.

Both front ends ask the one `Guard` before a handler runs: the gRPC interceptor
(service/auth/interceptor.py) with the call's method name and `authorization` metadata,
the REST port with the gRPC method its route mirrors and the `Authorization` header, so a
token has the same rights on both. No or an unknown token is UNAUTHENTICATED, a token
without the scope PERMISSION_DENIED; the messages say only that.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from pareto_core.errors import ParetoError, PermissionDenied, Unauthenticated
from service.auth.scopes import OPEN, allows, required_scope
from service.auth.tokens import TokenStore

log = logging.getLogger(__name__)
REFUSAL_LOG_INTERVAL_S = 10.0
_BEARER = "bearer "


def unauthenticated_message(carrier: str) -> str:
    """`carrier`: where the token travels ("metadata" on gRPC, "header" on REST)."""
    return f"missing or invalid bearer token ({carrier} 'authorization: Bearer ...')"


def bearer_token(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    """The token of the first `authorization` entry (gRPC metadata or HTTP headers), if it
    is a Bearer one."""
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        if text[: len(_BEARER)].lower() != _BEARER:
            return None
        return text[len(_BEARER) :].strip()
    return None


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


class Guard:
    def __init__(self, tokens: TokenStore) -> None:
        self._tokens = tokens
        self._refusals = ThrottledLog()

    def check(
        self, method: str, metadata: Sequence[tuple[str, Any]] | None, carrier: str
    ) -> ParetoError | None:
        """None when a call of `method` (`/package.Service/Method`) carrying `metadata` may
        run, else the error to answer it with."""
        needed = required_scope(method)
        if needed == OPEN:
            return None
        token = bearer_token(metadata)
        principal = self._tokens.authenticate(token) if token else None
        if principal is None:
            self._refusals.info("auth: refused %s: missing or unknown token", method)
            return Unauthenticated(unauthenticated_message(carrier))
        if not allows(principal.scopes, needed):
            self._refusals.info(
                "auth: refused %s to %r: needs scope %r", method, principal.name, needed
            )
            return PermissionDenied(f"this token lacks the {needed!r} scope this call needs")
        return None
