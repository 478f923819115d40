"""A real `pareto serve` in a process of its own, for tests that kill or restart it or
read what it exports."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Served:
    process: subprocess.Popen
    address: str  # gRPC, host:port
    metrics_url: str  # Prometheus text format
    rest_url: str = ""  # KServe v2 REST, http://host:port


def serve(data_dir: Path, env: dict[str, str] | None = None) -> Served:
    """Starts `pareto serve` on free loopback ports and returns once it listens; `env`:
    more PARETO_* settings."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pareto_cli.main",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--metrics-port",
            "0",
            "--http-port",
            "0",
            "--data-dir",
            str(data_dir),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"PARETO_MEASURE_MEMORY": "false"} | (env or {}),
    )
    log = []
    for line in process.stderr:
        pattern = r"listening on 127\.0\.0\.1:(\d+)(?: \(metrics :(\d+)(?:, REST :(\d+))?\))?"
        if match := re.search(pattern, line):
            threading.Thread(target=process.stderr.read, daemon=True).start()  # drain
            metrics_url = f"http://127.0.0.1:{match.group(2)}/metrics" if match.group(2) else ""
            rest_url = f"http://127.0.0.1:{match.group(3)}" if match.group(3) else ""
            return Served(process, f"127.0.0.1:{match.group(1)}", metrics_url, rest_url)
        log.append(line)
    tail = "".join(log[-20:])
    raise AssertionError(f"server did not start (exit {process.wait()}):\n{tail}")


def start_server(data_dir: Path) -> tuple[subprocess.Popen, str]:
    """`serve`, as (the process, its gRPC address)."""
    served = serve(data_dir)
    return served.process, served.address


def rss_bytes(pid: int) -> int:
    """Resident memory of process `pid` now (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"process {pid} has no VmRSS")
