"""Optional bearer-token auth with read/infer/admin scopes (see docs/security.md)."""

from __future__ import annotations

import logging

from service.auth.guard import Guard
from service.auth.interceptor import AuthInterceptor
from service.auth.tokens import TokenStore
from service.settings import Settings

log = logging.getLogger(__name__)


def guard(settings: Settings) -> Guard | None:
    """The process's one Guard when PARETO_AUTH_TOKENS_FILE is set, else None (auth off).
    A bad tokens file raises SettingsError naming the setting and the line."""
    if settings.auth_tokens_file is None:
        return None
    tokens = TokenStore(settings.auth_tokens_file)
    log.info("auth on: %d token(s) from %s", len(tokens), settings.auth_tokens_file)
    if settings.tls_cert_file is None:
        log.warning("auth is on but TLS is off: bearer tokens cross the network in clear text")
    return Guard(tokens)


def auth_interceptor(checks: Guard | None) -> AuthInterceptor | None:
    """The gRPC interceptor over `checks`, or None when auth is off."""
    return AuthInterceptor(checks) if checks is not None else None


__all__ = ["AuthInterceptor", "Guard", "TokenStore", "auth_interceptor", "guard"]
