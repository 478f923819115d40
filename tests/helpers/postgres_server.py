"""A real PostgreSQL server for the tests, started by the test session itself.

The server binaries come from the distribution's package (`tools/install_postgres.sh`,
called by `make install`, puts them under /usr/lib/postgresql/<major>/bin). initdb makes a
throw-away cluster in a temporary directory, and the server listens on a free loopback
port and a unix socket there, with trust authentication (nothing but this machine can
reach it) and without fsync (the data dies with the test session anyway). PostgreSQL
refuses to run as root, so as root it runs as the `postgres` system user (runuser).

Missing binaries skip the tests that need the server, with the reason; under CI=true they
fail instead: CI runs `make install`, so missing binaries there are a broken install step.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

BIN_GLOB = "/usr/lib/postgresql/*/bin"
SERVER_USER = "postgres"  # the role initdb creates; also the system user when run as root
START_TIMEOUT_S = 60


def find_bin_dir() -> Path | None:
    """The newest installed major version's bin dir holding initdb, pg_ctl and postgres."""
    found = []
    for path in Path("/").glob(BIN_GLOB.lstrip("/")):
        major = re.search(r"postgresql/(\d+)/bin", str(path))
        if major and all((path / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            found.append((int(major.group(1)), path))
    return max(found)[1] if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One throw-away cluster: `start()`, `create_database()` per test, `stop()`."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        # Not under pytest's tmp_path: its parents are private to root, and the server's
        # user must reach the directory.
        self.root = Path(tempfile.mkdtemp(prefix="pareto-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.root, SERVER_USER, SERVER_USER)

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=START_TIMEOUT_S, cwd=self.root
        )
        if result.returncode != 0:
            log_file = self.root / "server.log"
            log = log_file.read_text() if log_file.exists() else ""
            raise RuntimeError(
                f"{' '.join(args[:2])} exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}{log}"
            )
        return result

    def start(self) -> PostgresServer:
        self._run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", SERVER_USER, "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        for attempt in range(3):  # the free port may be taken between probe and bind
            self.port = free_port()
            options = (
                f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=300"
            )
            try:
                self._run(
                    "pg_ctl", "start", "-D", str(self.data), "-w",
                    "-t", str(START_TIMEOUT_S), "-l", str(self.root / "server.log"), "-o", options,
                )  # fmt: skip
                return self
            except RuntimeError:
                if attempt == 2:
                    raise
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self.admin(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with contextlib.suppress(Exception):
            self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def running_postgres() -> Iterator[PostgresServer]:
    """For a session fixture: a started server, stopped and removed afterwards; skips (or,
    under CI=true, fails) when the binaries are missing."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        reason = f"no PostgreSQL server binaries ({BIN_GLOB}/initdb); run `make install`"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must have them")
        pytest.skip(reason)
    server = PostgresServer(bin_dir)
    try:
        yield server.start()
    finally:
        server.stop()
