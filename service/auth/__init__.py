"""Optional bearer-token auth with read/infer/admin scopes (see README "Security")."""

from __future__ import annotations

import logging

from service.auth.interceptor import AuthInterceptor
from service.auth.tokens import TokenStore
from service.settings import Settings

log = logging.getLogger(__name__)


def auth_interceptor(settings: Settings) -> AuthInterceptor | None:
    """The interceptor when PARETO_AUTH_TOKENS_FILE is set, else None (auth off).
    A bad tokens file raises SettingsError naming the setting and the line."""
    if settings.auth_tokens_file is None:
        return None
    tokens = TokenStore(settings.auth_tokens_file)
    log.info("auth on: %d token(s) from %s", len(tokens), settings.auth_tokens_file)
    if settings.tls_cert_file is None:
        log.warning("auth is on but TLS is off: bearer tokens cross the network in clear text")
    return AuthInterceptor(tokens)


__all__ = ["AuthInterceptor", "TokenStore", "auth_interceptor"]
