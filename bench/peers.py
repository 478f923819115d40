"""Pareto against KServe's ModelServer and Seldon's MLServer, direct ONNX Runtime and the
transport floor, on the same ONNX files and thread settings, with one client harness.

`python -m bench.peers [--seconds 4] [--rounds 3]` installs `kserve==0.21.0` and
`mlserver==1.7.1` into virtualenvs of their own under `.bench-venvs/` (never into the
product's), serves the digits CNN and MiniLM with ONNX Runtime (1 intra-op thread) on each
(KServe: a custom `kserve.Model`; MLServer: a custom runtime; Pareto: `pareto serve` with
its default dynamic batching), and measures closed-loop throughput and latency from load
processes (`bench/peer_servers/load.py`: tritonclient.grpc, or tritonclient.http with JSON
tensors) for digits b1, digits b64 and MiniLM b1 s32 at concurrency 1, 8 and 32, over gRPC
and REST. Direct ONNX Runtime (one session, the same number of threads calling it, no
network) and the transport floor (a gRPC servicer answering a prepared response, no
model) are measured by the same harness. The sides alternate in rounds (this VM's speed
drifts); figures are medians over rounds. Results: bench/results/peers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO_ROOT, GatewayProcess, free_port, machine_info, package_versions

RESULTS = REPO_ROOT / "bench" / "results" / "peers.json"
MODEL_CACHE = REPO_ROOT / ".pareto" / "examples"
VENVS = REPO_ROOT / ".bench-venvs"
# mlserver 1.7.1's inference workers fail to start with uvloop >= 0.22 ("no current event
# loop"): the last release it works with is pinned beside it.
PEER_PACKAGES = {
    "kserve": ("kserve==0.21.0",),
    "mlserver": ("mlserver==1.7.1", "uvloop==0.21.0"),
}
ORT_PIN = "onnxruntime==1.32.0"
CONCURRENCY = (1, 8, 32)
MAX_LOAD_PROCESSES = 4
TARGET_BATCHED_VS_DIRECT = 1.3  # MiniLM b1, c8 and c32: Pareto over direct unbatched ORT
TARGET_FLOOR_SHARE = 0.8  # digits b1 c8 over gRPC: Pareto over the transport floor


@dataclass(frozen=True)
class Case:
    label: str
    model: str
    inputs: Path  # .npz of the request's tensors
    response: Path  # the transport floor's prepared ModelInferResponse


def build_cases(work: Path) -> tuple[dict[str, Path], list[Case]]:
    from tritonclient.grpc import service_pb2 as pb

    from examples.models import build_digits_cnn, export_minilm, tokenize
    from examples.text import english_sentences

    digits = build_digits_cnn(MODEL_CACHE / "digits_cnn.onnx")
    minilm = export_minilm(MODEL_CACHE / "minilm.onnx")
    x = np.ascontiguousarray(digits.X_test.astype(np.float32))
    requests = {
        "digits b1": ("digits", {"pixels": x[:1]}, ("logits", [1, 10])),
        "digits b64": ("digits", {"pixels": x[:64]}, ("logits", [64, 10])),
        "minilm b1 s32": (
            "minilm",
            tokenize(english_sentences(1, seed=0), seq_len=32),
            ("embedding", [1, 384]),
        ),
    }
    cases = []
    for label, (model, inputs, (output, shape)) in requests.items():
        slug = label.replace(" ", "-")
        np.savez(work / f"{slug}.npz", **inputs)
        canned = pb.ModelInferResponse(model_name=model)
        canned.outputs.add(name=output, datatype="FP32", shape=shape)
        canned.raw_output_contents.append(np.zeros(shape, np.float32).tobytes())
        (work / f"{slug}.bin").write_bytes(canned.SerializeToString())
        cases.append(Case(label, model, work / f"{slug}.npz", work / f"{slug}.bin"))
    return {"digits": digits.path, "minilm": minilm.path}, cases


# -- the sides ---------------------------------------------------------------------------


def ensure_venv(name: str) -> Path:
    """The peer's own virtualenv (created and filled on first use); its python."""
    python = VENVS / name / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENVS / name)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, *PEER_PACKAGES[name], ORT_PIN], check=True)
    return python


def _wait_listening(port: int, process: subprocess.Popen, timeout: float = 120.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on port {port}")


@contextmanager
def _process(command: list[str], ports: list[int], log: Path, **kwargs: Any) -> Iterator[None]:
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, **kwargs)
        try:
            for port in ports:
                _wait_listening(port, process)
            yield
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def pareto(models: dict[str, Path], work: Path) -> Iterator[dict[str, str]]:
    env = {
        "PARETO_ORT_INTRA_OP_THREADS": "1",
        "PARETO_ORT_INTER_OP_THREADS": "1",
        "PARETO_GRPC_WORKERS": str(max(CONCURRENCY)),
        "PARETO_MAX_INFLIGHT_REQUESTS": str(4 * max(CONCURRENCY)),
        "PARETO_MEASURE_MEMORY": "false",
    }
    gateway = GatewayProcess(work / "pareto-data", work / "pareto.log", env)
    gateway.start()
    try:
        from pareto_cli.client import ParetoClient

        with ParetoClient(gateway.address) as client:
            for name, path in models.items():
                client.upload(path, name)
        yield {"grpc": gateway.address, "http": f"127.0.0.1:{gateway.http_port}"}
    finally:
        gateway.stop()


@contextmanager
def kserve(models: dict[str, Path], work: Path) -> Iterator[dict[str, str]]:
    python = ensure_venv("kserve")
    http, grpc_port = free_port(), free_port()
    script = REPO_ROOT / "bench" / "peer_servers" / "kserve_server.py"
    command = [str(python), str(script), "--http-port", str(http), "--grpc-port", str(grpc_port)]
    command += [f"{name}={path}" for name, path in models.items()]
    with _process(command, [http, grpc_port], work / "kserve.log", cwd=work):
        yield {"grpc": f"127.0.0.1:{grpc_port}", "http": f"127.0.0.1:{http}"}


@contextmanager
def mlserver(models: dict[str, Path], work: Path) -> Iterator[dict[str, str]]:
    python = ensure_venv("mlserver")
    http, grpc_port, metrics = free_port(), free_port(), free_port()
    root = work / "mlserver"
    root.mkdir(exist_ok=True)
    settings = {"http_port": http, "grpc_port": grpc_port, "metrics_port": metrics}
    (root / "settings.json").write_text(json.dumps(settings))
    for name, path in models.items():
        (root / name).mkdir(exist_ok=True)
        model = {
            "name": name,
            "implementation": "mlserver_runtime.OrtRuntime",
            "parameters": {"uri": str(path), "extra": {"threads": 1}},
        }
        (root / name / "model-settings.json").write_text(json.dumps(model))
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT / "bench" / "peer_servers")}
    command = [str(python.parent / "mlserver"), "start", str(root)]
    with _process(command, [http, grpc_port], work / "mlserver.log", env=env, cwd=root):
        yield {"grpc": f"127.0.0.1:{grpc_port}", "http": f"127.0.0.1:{http}"}


@contextmanager
def floors(cases: list[Case], work: Path) -> Iterator[dict[str, str]]:
    """One canned-response servicer per case (the right output shape for each)."""
    with ExitStack() as stack:
        addresses = {}
        for case in cases:
            port = free_port()
            command = [sys.executable, "-m", "bench.peer_servers.floor_server", "--port"]
            command += [str(port), "--workers", str(max(CONCURRENCY))]
            command += ["--response", str(case.response)]
            log = work / f"floor-{case.response.stem}.log"
            stack.enter_context(_process(command, [port], log, cwd=REPO_ROOT))
            addresses[case.label] = f"127.0.0.1:{port}"
        yield addresses


# -- measuring -----------------------------------------------------------------------------


def measure(protocol: str, target: str, case: Case, concurrency: int, seconds: float) -> dict:
    """Closed-loop load from separate processes; req/s, p50/p99 (ms) and errors."""
    processes = min(concurrency, MAX_LOAD_PROCESSES)
    threads = [concurrency // processes + (k < concurrency % processes) for k in range(processes)]
    command = [sys.executable, "-m", "bench.peer_servers.load", "--protocol", protocol]
    command += ["--target", target, "--model", case.model, "--inputs", str(case.inputs)]
    command += ["--seconds", str(seconds)]
    running = [
        subprocess.Popen(
            [*command, "--threads", str(n)], stdout=subprocess.PIPE, cwd=REPO_ROOT, text=True
        )
        for n in threads
    ]
    results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in running]
    counted = [r for r in results if r["count"]]
    return {
        "req_per_s": sum(r["count"] for r in results) / seconds,
        "p50_ms": float(np.median([r["p50_ms"] for r in counted])) if counted else None,
        "p99_ms": float(max(r["p99_ms"] for r in counted)) if counted else None,
        "errors": sum(r["errors"] for r in results),
    }


def run_cells(
    sides: dict[str, dict[str, str]], models: dict[str, Path], cases: list[Case], args: Any
) -> list[dict[str, Any]]:
    cells = []
    for protocol in args.protocols:
        for case in cases:
            for concurrency in CONCURRENCY:
                cells.append(_cell(sides, models, case, protocol, concurrency, args))
                _print_cell(cells[-1])
    return cells


def _cell(sides, models, case: Case, protocol: str, concurrency: int, args: Any) -> dict:
    targets = {name: addresses.get(protocol) for name, addresses in sides.items()}
    if protocol == "grpc":
        targets["floor"] = sides["floor"][case.label]
    else:
        targets.pop("floor", None)
    targets["direct"] = str(models[case.model])
    rounds: dict[str, list[dict]] = {name: [] for name in targets}
    names = list(targets)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            side_protocol = "direct" if name == "direct" else protocol
            rounds[name].append(
                measure(side_protocol, targets[name], case, concurrency, args.seconds)
            )
    return {
        "case": case.label,
        "protocol": protocol,
        "concurrency": concurrency,
        "sides": {name: _median(results) for name, results in rounds.items()},
    }


def _median(results: list[dict]) -> dict:
    def med(key: str) -> float | None:
        values = [r[key] for r in results if r[key] is not None]
        return round(float(np.median(values)), 3) if values else None

    return {
        "req_per_s": med("req_per_s"),
        "p50_ms": med("p50_ms"),
        "p99_ms": med("p99_ms"),
        "errors": sum(r["errors"] for r in results),
        "rounds": len(results),
    }


def _print_cell(cell: dict) -> None:
    sides = ", ".join(
        f"{n} {s['req_per_s']:.0f}" + (f" ({s['errors']} errors)" if s["errors"] else "")
        for n, s in cell["sides"].items()
    )
    print(f"{cell['protocol']:4} {cell['case']:14} c{cell['concurrency']:<3} req/s: {sides}")


# -- targets --------------------------------------------------------------------------------


def checks(cells: list[dict]) -> list[dict]:
    found = []
    for cell in cells:
        sides = cell["sides"]
        ours = sides["pareto"]["req_per_s"] or 0.0
        best_peer = max(sides["kserve"]["req_per_s"] or 0.0, sides["mlserver"]["req_per_s"] or 0.0)
        where = f"{cell['protocol']} {cell['case']} c{cell['concurrency']}"
        found.append(
            {
                "target": f"{where}: Pareto ahead of KServe and MLServer (req/s ratio > 1)",
                "value": round(ours / best_peer, 3) if best_peer else None,
                "met": ours > best_peer,
            }
        )
        direct = sides["direct"]["req_per_s"] or 0.0
        if (
            cell["protocol"] == "grpc"
            and cell["case"] == "minilm b1 s32"
            and cell["concurrency"] in (8, 32)
        ):
            ratio = ours / direct if direct else 0.0
            found.append(
                {
                    "target": f"{where}: batched >= {TARGET_BATCHED_VS_DIRECT}x direct ORT",
                    "value": round(ratio, 3),
                    "met": ratio >= TARGET_BATCHED_VS_DIRECT,
                }
            )
        if cell["protocol"] == "grpc" and cell["case"] == "digits b1" and cell["concurrency"] == 8:
            floor = sides["floor"]["req_per_s"] or 0.0
            share = ours / floor if floor else 0.0
            found.append(
                {
                    "target": f"{where}: >= {TARGET_FLOOR_SHARE:.0%} of the transport floor",
                    "value": round(share, 3),
                    "met": share >= TARGET_FLOOR_SHARE,
                }
            )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per side, round and cell")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--protocols", nargs="+", default=["grpc", "http"], choices=["grpc", "http"]
    )
    args = parser.parse_args(argv)
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        work = Path(tmp)
        models, cases = build_cases(work)
        sides = {
            "pareto": stack.enter_context(pareto(models, work)),
            "kserve": stack.enter_context(kserve(models, work)),
            "mlserver": stack.enter_context(mlserver(models, work)),
            "floor": stack.enter_context(floors(cases, work)),
        }
        cells = run_cells(sides, models, cases, args)
    found = checks(cells)
    report = {
        "bench": "peers",
        "created_unix": int(started),
        "duration_s": round(time.time() - started, 1),
        "machine": machine_info(),
        "versions": {
            **package_versions(["onnxruntime", "grpcio", "tritonclient"]),
            "kserve": " ".join(PEER_PACKAGES["kserve"]),
            "mlserver": " ".join(PEER_PACKAGES["mlserver"]),
        },
        "settings": {"seconds": args.seconds, "rounds": args.rounds, "ort_threads": 1},
        "cells": cells,
        "checks": found,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    met = sum(c["met"] for c in found)
    print(f"{met} of {len(found)} targets met; written {RESULTS.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
