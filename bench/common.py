"""Helpers shared by the benches and the demo: a gateway subprocess, load loops, statistics.

Kept free of torch: model building lives in `examples.models`.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent


class GatewayError(RuntimeError):
    """The gateway subprocess did not start, became unhealthy, or did not stop cleanly."""


def free_port() -> int:
    """A currently free loopback TCP port (may race with other processes; fine for local use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pareto_command() -> list[str]:
    """The `pareto` console script beside this interpreter, else `python -m pareto_cli.main`."""
    script = Path(sys.executable).parent / "pareto"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "pareto_cli.main"]


def wait_serving(address: str, timeout: float, alive: Callable[[], bool] | None = None) -> None:
    """Poll grpc.health.v1 until the overall status is SERVING; GatewayError on timeout."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if alive is not None and not alive():
                raise GatewayError(f"gateway at {address} exited before it was SERVING")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise GatewayError(f"gateway at {address} was not SERVING within {timeout:.0f} s")


class GatewayProcess:
    """`pareto serve` as a child process on loopback ports, its output sent to a log file."""

    def __init__(self, data_dir: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.port = free_port()
        self.metrics_port = free_port()
        self.http_port = free_port()
        self._env = {**os.environ, **(env or {})}
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (e.g. to read its RSS)."""
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 60.0) -> None:
        """Spawn the server and wait until gRPC health says SERVING."""
        args = [
            *pareto_command(),
            "serve",
            *("--port", str(self.port), "--metrics-port", str(self.metrics_port)),
            *("--http-port", str(self.http_port)),
            *("--data-dir", str(self.data_dir)),
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        env = {**self._env, "PARETO_HOST": "127.0.0.1"}
        self._proc = subprocess.Popen(
            args, cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        wait_serving(self.address, timeout, alive=lambda: self._proc.poll() is None)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait; returns the exit code. Kills (and raises) if it does not exit."""
        proc = self._proc
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise GatewayError(f"gateway did not exit within {timeout:.0f} s of SIGTERM") from None
        finally:
            self._proc = None
            if self._log is not None:
                self._log.close()
        return code

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def fresh_dir(path: Path) -> Path:
    """Empty `path` (removing what was there) and return it."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


# --------------------------------------------------------------------------- load loops


@dataclass
class RoundResult:
    latencies_s: list[float]
    elapsed_s: float


def run_round(calls: Sequence[Callable[[], Any]], seconds: float) -> RoundResult:
    """Run each callable in its own thread, back to back, for `seconds`; time every call.

    Concurrency is `len(calls)`: one closed-loop worker per callable (each may own its own
    client). All workers start together on a barrier; elapsed runs to the last worker's end.
    """
    barrier = threading.Barrier(len(calls) + 1)
    per_worker: list[list[float]] = [[] for _ in calls]
    errors: list[BaseException] = []

    def worker(call: Callable[[], Any], out: list[float]) -> None:
        barrier.wait()
        deadline = time.perf_counter() + seconds
        try:
            while (start := time.perf_counter()) < deadline:
                call()
                out.append(time.perf_counter() - start)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(call, out))
        for call, out in zip(calls, per_worker, strict=True)
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    begin = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - begin
    if errors:
        raise errors[0]
    return RoundResult([x for out in per_worker for x in out], elapsed)


def run_interleaved(calls: dict[str, Callable[[], Any]], seconds: float) -> dict[str, RoundResult]:
    """Concurrency 1, sides interleaved request by request (order flipping every request).

    Each side sees the same moments of machine noise, which on a shared 2-core VM swings
    single-thread speed by +-30 % within seconds. Elapsed per side is its own busy time.
    """
    names = list(calls)
    latencies: dict[str, list[float]] = {name: [] for name in names}
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for name in names:
            start = time.perf_counter()
            calls[name]()
            latencies[name].append(time.perf_counter() - start)
        names.reverse()
    return {name: RoundResult(lat, sum(lat)) for name, lat in latencies.items()}


def summarize(rounds: Sequence[RoundResult]) -> dict[str, float]:
    """Latency percentiles (ms) and throughput (requests/s) over all rounds of one cell."""
    latencies = np.array([x for r in rounds for x in r.latencies_s]) * 1e3
    elapsed = sum(r.elapsed_s for r in rounds)
    return {
        "requests": int(latencies.size),
        "p50_ms": float(np.percentile(latencies, 50)),
        "p90_ms": float(np.percentile(latencies, 90)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "mean_ms": float(latencies.mean()),
        "throughput_rps": float(latencies.size / elapsed),
    }


def paired(a: Sequence[RoundResult], b: Sequence[RoundResult]) -> dict[str, float]:
    """Median over round pairs of b-minus-a p50 (ms) and b/a throughput.

    Rounds i of both sides ran back to back, so slow drifts of the machine (other
    processes, frequency changes) cancel within a pair instead of biasing pooled numbers.
    """
    diffs, ratios = [], []
    for ra, rb in zip(a, b, strict=True):
        diffs.append(np.percentile(rb.latencies_s, 50) - np.percentile(ra.latencies_s, 50))
        ratios.append((len(rb.latencies_s) / rb.elapsed_s) / (len(ra.latencies_s) / ra.elapsed_s))
    return {
        "p50_diff_ms": float(np.median(diffs) * 1e3),
        "throughput_ratio": float(np.median(ratios)),
    }


# --------------------------------------------------------------------------- environment


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }


def package_versions(names: Sequence[str]) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found
