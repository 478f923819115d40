"""Bearer tokens from a file (PARETO_AUTH_TOKENS_FILE), e.g. a mounted Kubernetes Secret.

One token per line, three fields separated by whitespace; a field starting with `#`
starts a comment (a token may contain `#`, but not start with it):

    # name    scopes        token
    ci        read,infer    9c1f0e...   (at least 16 visible ASCII characters)
    operator  admin         4b7d2a...

`name` (letters, digits, `_.-`) appears in logs instead of the token; `scopes` is a
comma-separated subset of read, infer, admin. Names and tokens must be unique.

Lookups hash the presented token and compare it with every stored hash using
`hmac.compare_digest`, without stopping at a match, so timing tells neither whether nor
which token matched. The file is re-read when it changes (a rotated Secret): a broken new
version is logged and the previous tokens stay in force.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from service.auth.scopes import SCOPES
from service.settings import SettingsError

log = logging.getLogger(__name__)

SETTING = "PARETO_AUTH_TOKENS_FILE"
MIN_TOKEN_CHARS = 16
RELOAD_CHECK_S = 1.0
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TOKEN = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class Principal:
    name: str
    scopes: frozenset[str]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _without_comment(fields: list[str]) -> list[str]:
    """Fields before the first one starting with `#` (so a token may contain a `#`)."""
    for i, f in enumerate(fields):
        if f.startswith("#"):
            return fields[:i]
    return fields


def parse_tokens(text: str, source: str) -> list[tuple[bytes, Principal]]:
    """(sha256 of token, principal) per line; SettingsError naming the line, never a token."""
    entries: list[tuple[bytes, Principal]] = []
    names: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        fields = _without_comment(line.split())
        if not fields:
            continue

        def bad(what: str, n: int = number) -> SettingsError:
            return SettingsError(f"{SETTING} ({source}) line {n}: {what}")

        if len(fields) != 3:
            raise bad(f"expected 3 fields `name scopes token`, got {len(fields)}")
        name, scope_text, token = fields
        if not _NAME.fullmatch(name):
            raise bad(f"name must match {_NAME.pattern}")
        if name in names:
            raise bad(f"name {name!r} appears twice")
        scopes = frozenset(scope_text.split(","))
        if not scopes <= set(SCOPES):
            raise bad(f"scopes must be a comma-separated subset of {', '.join(SCOPES)}")
        if len(token) < MIN_TOKEN_CHARS or not _TOKEN.fullmatch(token):
            raise bad(f"the token must be at least {MIN_TOKEN_CHARS} visible ASCII characters")
        digest = _digest(token)
        if any(hmac.compare_digest(digest, d) for d, _ in entries):
            raise bad(f"the token of {name!r} is also another name's token")
        names.add(name)
        entries.append((digest, Principal(name, scopes)))
    if not entries:
        raise SettingsError(f"{SETTING} ({source}): no tokens (every call would be refused)")
    return entries


def _read(path: Path) -> list[tuple[bytes, Principal]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{SETTING}: cannot read {path}: {exc.__class__.__name__}") from None
    return parse_tokens(text, str(path))


class TokenStore:
    """The tokens of one file, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._stamp = self._file_stamp()
        self._entries = _read(self.path)  # a bad file at start stops the server
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, token: str) -> Principal | None:
        """The principal holding `token`, or None. Constant time in which token matched."""
        self._maybe_reload()
        digest = _digest(token)
        found: Principal | None = None
        for stored, principal in self._entries:
            if hmac.compare_digest(digest, stored):
                found = principal
        return found

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < RELOAD_CHECK_S or not self._lock.acquire(blocking=False):
            return
        try:
            self._checked = now
            stamp = self._file_stamp()
            if stamp is None or stamp == self._stamp:
                return
            self._stamp = stamp
            try:
                self._entries = _read(self.path)
                log.info("auth: reloaded %d token(s) from %s", len(self._entries), self.path)
            except SettingsError as exc:
                log.error("auth: keeping the previous tokens: %s", exc)
        finally:
            self._lock.release()
