"""psycopg 3 made to look like sqlite3 to the shared SQL: `?` placeholders, rows that are
tuples also readable by column name, and database URLs that never show their password.

psycopg is imported lazily (only a PostgreSQL repository needs it).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pareto_core.errors import FailedPrecondition

SCHEMES = ("postgresql", "postgres")


class Row(tuple):
    """A result row: a tuple (positions, unpacking) whose items can also be read by column
    name, like sqlite3.Row."""

    _names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def row_factory(cursor: Any) -> Any:
    """psycopg row factory making `Row`s (one name index per result set)."""
    names = {column.name: i for i, column in enumerate(cursor.description or ())}

    def make(values: Sequence[Any]) -> Row:
        row = Row(values)
        row._names = names
        return row

    return make


@functools.lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    """`?` placeholders -> `%s`, and literal `%` -> `%%`, outside quoted strings."""
    out: list[str] = []
    quote = ""
    for ch in sql:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "?":
            out.append("%s")
            continue
        if ch == "%":
            out.append("%%")
            continue
        out.append(ch)
    return "".join(out)


class PgConnection:
    """What the SQL mixins call: `execute(sql, params)` with `?` placeholders, returning a
    cursor with fetchone()/fetchall() of `Row`s (the connection must use `row_factory`)."""

    def __init__(self, conn: Any) -> None:
        self.raw = conn

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Any:
        return self.raw.execute(to_pyformat(sql), tuple(parameters))


def redact(url: str) -> str:
    """The URL with its password (user info or `password=` parameter) replaced by ***,
    for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable database URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = re.sub(r"(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def check_url(url: str) -> str:
    """`url` if it is a postgresql:// URL naming a database, else FailedPrecondition naming
    it (without its password) and the expected form."""
    shown = redact(url)
    expected = "expected postgresql://user:password@host:port/database"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        message = f"PARETO_DATABASE_URL {shown} is not valid ({exc}); {expected}"
        raise FailedPrecondition(message) from None
    if parts.scheme not in SCHEMES:
        raise FailedPrecondition(
            f"PARETO_DATABASE_URL {shown}: unsupported scheme {parts.scheme!r} (empty = "
            f"embedded SQLite); {expected}"
        )
    if not parts.path.strip("/"):
        raise FailedPrecondition(f"PARETO_DATABASE_URL {shown} names no database; {expected}")
    return url


def describe_error(exc: BaseException, url: str) -> str:
    """psycopg's message on one line, with the URL's password removed should it appear."""
    text = " ".join(str(exc).split())
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return text.replace(password, "***") if password else text
