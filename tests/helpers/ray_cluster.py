"""A real Ray cluster for the tests, started by the test module itself (like PostgreSQL in
tests/helpers/postgres_server.py).

`ray start --head --block`: one node with 2 CPUs, no dashboard, usage stats off, every port
it listens on a free one (two clusters on one machine do not collide), on loopback. Ray
replaces 127.0.0.1 by the machine's outward address unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER
is 0 (its single-machine mode); the head and every driver need it, so `ray_env()` is put
in the environment of the gateway under test, whose job drivers inherit it.

Stopped by killing its process group (never `ray stop`, which stops every Ray cluster of
the machine); its worker processes, in process groups of their own, exit when their
raylet does. `worker_pids(title)` finds this cluster's workers by the title Ray gives a
worker while it runs a task ("ray::run_trial_task") or hosts an actor ("ray::JobActor").

Without the `ray` package the tests that need the cluster skip with the reason; under
CI=true they fail instead: `make install` installs Ray.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 30
READY_LINE = "Ray runtime started"


def ray_env() -> dict[str, str]:
    return {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ray_command() -> Path | None:
    script = Path(sys.executable).parent / "ray"
    return script if script.is_file() else None


class RayHead:
    def __init__(self, command: Path, num_cpus: int = 2) -> None:
        self.command = command
        self.num_cpus = num_cpus
        self.root = Path(tempfile.mkdtemp(prefix="pareto-ray-"))
        self.log = self.root / "head.log"
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.client_port = free_port()
        self.client_address = f"ray://127.0.0.1:{self.client_port}"  # Ray Client
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RayHead:
        ports = ("--dashboard-port", "--dashboard-agent-listen-port")
        args = [str(self.command), "start", "--head", "--block", "--disable-usage-stats"]
        args += ["--port", str(self.port), "--num-cpus", str(self.num_cpus)]
        args += ["--ray-client-server-port", str(self.client_port)]
        args += ["--include-dashboard=false", "--node-ip-address", "127.0.0.1"]
        args += ["--temp-dir", str(self.root / "t"), "--min-worker-port=0", "--max-worker-port=0"]
        for option in ports:
            args += [option, str(free_port())]
        env = {**os.environ, **ray_env(), "AUTOSCALER_METRIC_PORT": str(free_port())}
        env["GRPC_ENABLE_FORK_SUPPORT"] = "0"  # as the Kubernetes overlay's head (raycluster.yaml)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, process_group=0, cwd=ROOT
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while READY_LINE not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ray start failed:\n{self.log.read_text(errors='replace')}")
            time.sleep(0.2)
        return self

    def raylet_pid(self) -> int:
        for pid, _, pgid, title in processes():
            if self.process and pgid == self.process.pid and title.endswith("/raylet"):
                return pid
        raise LookupError("no raylet in the cluster's process group")

    def worker_pids(self, title: str) -> list[int]:
        """This cluster's worker processes whose title starts with `ray::<title>`."""
        raylet, prefix = self.raylet_pid(), f"ray::{title}"
        return [p for p, ppid, _, t in processes() if ppid == raylet and t.startswith(prefix)]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                raylet = self.raylet_pid()
            except LookupError:
                raylet = -1
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while any(ppid == raylet for _, ppid, _, _ in processes()):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        shutil.rmtree(self.root, ignore_errors=True)


def processes() -> list[tuple[int, int, int, str]]:
    """(pid, ppid, pgid, title) of every process we can read; the title is argv[0] as the
    process set it (Ray's workers rename themselves)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        found.append((int(entry.name), int(fields[1]), int(fields[2]), title))
    return found


def running_ray() -> Iterator[RayHead]:
    """For a module fixture: a started cluster, stopped and removed afterwards; skips (or,
    under CI=true, fails) without the `ray` command."""
    command = ray_command()
    if command is None:
        reason = "Ray is not installed (`make install` installs ray)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must have it")
        pytest.skip(reason)
    head = RayHead(command).start()
    try:
        yield head
    finally:
        head.stop()
