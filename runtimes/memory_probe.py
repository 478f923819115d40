"""Resident memory one loaded model adds, measured in a fresh child process.

Several sessions in one process share allocators, thread pools and library code, so their
memory cannot be told apart from inside the server. Instead a new Python process
(``python -m runtimes.memory_probe --runtime NAME --model PATH [--options JSON]``):

1. imports the runtime backend (e.g. ``onnxruntime``) and checks it is available,
2. reads ``VmRSS`` from ``/proc/self/status``: the baseline,
3. loads the model with the given options and runs one inference on all-zero inputs built
   from the signature (dynamic dims set to 1), so that lazily allocated weights, arenas and
   per-session thread pools are counted,
4. reads ``VmRSS`` (loaded) and ``VmHWM`` (peak over the process's life) again, and
5. prints one JSON line: baseline, loaded and peak RSS, and
   ``model_memory_bytes = loaded - baseline``.

The figure is what serving this model costs a process that already has the runtime
library loaded. It includes the runtime's one-time set-up on its first session, and it
excludes the Python interpreter and the library code itself. It is Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pareto_core.errors import Internal, ParetoError
from pareto_core.tensors import Signature
from runtimes import helper_process

# Short form of the method above; also the Prometheus help of pareto_model_memory_bytes.
MEMORY_METHOD = (
    "Resident memory a loaded model adds: VmRSS of a fresh process after loading the model "
    "and running one inference, minus VmRSS after importing the runtime library."
)
_STDERR_TAIL_CHARS = 2000
_PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ProbeResult:
    baseline_rss_bytes: int
    loaded_rss_bytes: int
    peak_rss_bytes: int
    model_memory_bytes: int
    method: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProbeResult:
        return cls(
            baseline_rss_bytes=int(data["baseline_rss_bytes"]),
            loaded_rss_bytes=int(data["loaded_rss_bytes"]),
            peak_rss_bytes=int(data["peak_rss_bytes"]),
            model_memory_bytes=int(data["model_memory_bytes"]),
            method=str(data["method"]),
        )


def measure_model_memory(
    runtime_name: str,
    model_path: Path | str,
    options: dict[str, Any] | None = None,
    timeout_s: float = 120,
) -> ProbeResult:
    """Run the probe in a bounded helper process (runtimes/helper_process.py); Internal
    (with the child's stderr tail) on failure."""
    args = ["--runtime", runtime_name, "--model", str(Path(model_path).resolve())]
    if options:
        args += ["--options", json.dumps(options)]
    what = f"memory probe of {Path(model_path).name} on runtime {runtime_name!r}"
    try:
        proc = helper_process.run_module(
            "runtimes.memory_probe", args, timeout_s=timeout_s, env=child_env()
        )
    except subprocess.TimeoutExpired:
        raise Internal(f"{what} did not finish within {timeout_s} s") from None
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace")[-_STDERR_TAIL_CHARS:].strip()
        raise Internal(f"{what} failed (exit code {proc.returncode}): {tail}")
    return _parse_output(proc.stdout.decode("utf-8", "replace"), what)


def child_env() -> dict[str, str]:
    """The parent's environment, with this project importable as `runtimes`."""
    env = dict(os.environ)
    paths = [str(_PROJECT_ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def _parse_output(stdout: str, what: str) -> ProbeResult:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    try:
        return ProbeResult.from_json(json.loads(lines[-1]))
    except (IndexError, ValueError, KeyError, TypeError) as exc:
        raise Internal(f"{what} printed no result line ({exc}): {stdout[-500:]!r}") from None


def read_proc_status(field: str) -> int:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM, ...) in bytes."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError as exc:
        raise Internal(f"the memory probe needs Linux /proc/self/status: {exc}") from None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise Internal(f"/proc/self/status has no {field} line")


def zero_inputs(signature: Signature) -> dict[str, np.ndarray]:
    """All-zero inputs matching `signature`, with each dynamic dim set to 1."""
    inputs = {}
    for spec in signature.inputs:
        shape = tuple(1 if d < 0 else d for d in spec.shape)
        inputs[spec.name] = np.zeros(shape, dtype=spec.numpy_dtype)
    return inputs


def probe(runtime_name: str, model_path: Path, options: dict[str, Any] | None) -> ProbeResult:
    """Steps 1-4 of the module docstring, in this process (meant for a fresh one)."""
    from runtimes.registry import get_runtime

    runtime = get_runtime(runtime_name)
    missing = runtime.available()
    if missing is not None:
        raise Internal(f"runtime {runtime_name!r} is not available: {missing}")
    baseline = read_proc_status("VmRSS")
    session = runtime.load(model_path, options)
    session.run(zero_inputs(session.signature))
    loaded = read_proc_status("VmRSS")
    peak = read_proc_status("VmHWM")
    return ProbeResult(baseline, loaded, peak, loaded - baseline, MEMORY_METHOD)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtimes.memory_probe", description=__doc__)
    parser.add_argument("--runtime", required=True, help="runtime name, e.g. onnxruntime_cpu")
    parser.add_argument("--model", required=True, type=Path, help="model file to load")
    parser.add_argument("--options", default="{}", help="runtime options as a JSON object")
    args = parser.parse_args(argv)
    try:
        options = json.loads(args.options)
    except ValueError as exc:
        parser.error(f"--options is not valid JSON: {exc}")
    try:
        result = probe(args.runtime, args.model, options)
    except ParetoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_json()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
