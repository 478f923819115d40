"""Bounded loopback load: many clients, mixed models, for minutes; errors and RSS over time.

`python -m bench.load [--seconds 180] [--concurrency 32] [--no-variant]` (or `make bench`).
It starts a real `pareto serve` process, uploads the digits CNN and MiniLM
(`examples/models.py`), and unless `--no-variant` makes a real MiniLM variant through the
gateway itself (`pareto compress` with one `quantize.dynamic` recipe, short evaluation),
served by its own name `minilm.<variant id>`. Then `--concurrency` closed-loop workers,
each with its own unmodified `tritonclient.grpc.InferenceServerClient`, cycle through the
targets (digits b1, digits b16, MiniLM b1 s32, its variant b1 s32) for `--seconds`, while
a sampler reads the server's VmRSS from /proc/<pid>/status every second.

Reported (stdout and bench/results/load.json): throughput, p50/p99 per target and overall,
errors by status code (goal: zero), and RSS over time with its growth after warm-up (the
first `--warmup` seconds; goal: flat). Client and server share this machine's cores, so
throughput is what one loopback box does, not a server capacity.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    REPO_ROOT,
    GatewayProcess,
    machine_info,
    package_versions,
    pareto_command,
)

RESULTS = REPO_ROOT / "bench" / "results" / "load.json"
MODEL_CACHE = REPO_ROOT / ".pareto" / "examples"
VARIANT_RECIPE = """\
recipes:
  - name: int8-dynamic
    steps:
      - technique: quantize.dynamic
        config: {per_channel: true, optimize: auto}
datasets: {evaluation: minilm-eval}
evaluation: {batch_sizes: [1], iterations: 10}
"""


@dataclass(frozen=True)
class Target:
    label: str
    model: str
    inputs: dict[str, np.ndarray]
    output: str


@dataclass
class Log:
    """What one worker saw: (seconds since start, target, latency s, status code name)."""

    calls: list[tuple[float, str, float, str]] = field(default_factory=list)


def build_targets(address: str, tmp: Path, variant: bool, say: Any) -> list[Target]:
    from examples.models import build_digits_cnn, export_minilm, tokenize
    from examples.text import english_sentences
    from pareto_cli.client import ParetoClient

    digits = build_digits_cnn(MODEL_CACHE / "digits_cnn.onnx")
    minilm = export_minilm(MODEL_CACHE / "minilm.onnx")
    with ParetoClient(address) as client:
        client.upload(digits.path, "digits")
        client.upload(minilm.path, "minilm")
    x = digits.X_test
    tokens = tokenize(english_sentences(1, seed=0), seq_len=32)
    targets = [
        Target("digits b1", "digits", {"pixels": np.ascontiguousarray(x[:1])}, "logits"),
        Target("digits b16", "digits", {"pixels": np.ascontiguousarray(x[:16])}, "logits"),
        Target("minilm b1 s32", "minilm", tokens, "embedding"),
    ]
    if variant:
        say("making the MiniLM int8 variant through the gateway (pareto compress)")
        name = make_variant(address, tmp)
        targets.append(Target("minilm int8 b1 s32", name, tokens, "embedding"))
    return targets


def make_variant(address: str, tmp: Path) -> str:
    """A real variant: upload minilm-eval, run one quantize.dynamic job; its serving name."""
    from examples.datasets import write_example_datasets
    from pareto.v1 import variants_pb2
    from pareto_cli.client import ParetoClient

    eval_set = write_example_datasets(tmp / "datasets")["minilm-eval"]
    recipe = tmp / "minilm-int8.yaml"
    recipe.write_text(VARIANT_RECIPE)
    cli = [*pareto_command()]
    server = ("--server", address)
    subprocess.run(
        [*cli, "datasets", "upload", str(eval_set), "--name", "minilm-eval", *server],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*cli, "compress", "minilm", "--recipe", str(recipe), "--wait", *server],
        check=True,
        capture_output=True,
    )
    with ParetoClient(address) as client:
        found = client.variants.ListVariants(variants_pb2.ListVariantsRequest(model="minilm"))
    return found.variants[-1].serving_name


def request_for(target: Target) -> tuple[list[Any], list[Any]]:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    inputs = []
    for name, array in target.inputs.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs, [grpcclient.InferRequestedOutput(target.output)]


def worker(address: str, targets: list[Target], offset: int, start: float, end: float, log: Log):
    """Closed loop: one request at a time, cycling through the targets from `offset`."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(address)
    prepared = [request_for(t) for t in targets]
    i = offset
    try:
        while (begin := time.perf_counter()) < end:
            target = targets[i % len(targets)]
            inputs, outputs = prepared[i % len(targets)]
            code = "OK"
            try:
                client.infer(target.model, inputs, outputs=outputs, client_timeout=60)
            except InferenceServerException as exc:
                code = str(exc.status()).removeprefix("StatusCode.") or "UNKNOWN"
            log.calls.append((begin - start, target.label, time.perf_counter() - begin, code))
            i += 1
    finally:
        client.close()


def vm_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def sample_rss(pid: int, start: float, stop: threading.Event, out: list, every_s: float):
    while not stop.is_set():
        out.append((round(time.perf_counter() - start, 2), vm_rss_bytes(pid)))
        stop.wait(every_s)


def run_load(gateway: GatewayProcess, targets: list[Target], args: argparse.Namespace) -> dict:
    logs = [Log() for _ in range(args.concurrency)]
    rss: list[tuple[float, int]] = []
    stop = threading.Event()
    start = time.perf_counter()
    end = start + args.seconds
    sampler = threading.Thread(
        target=sample_rss, args=(gateway.pid, start, stop, rss, args.rss_interval), daemon=True
    )
    sampler.start()
    threads = [
        threading.Thread(target=worker, args=(gateway.address, targets, i, start, end, log))
        for i, log in enumerate(logs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    stop.set()
    sampler.join()
    rss.append((round(elapsed, 2), vm_rss_bytes(gateway.pid)))
    calls = [c for log in logs for c in log.calls]
    return summarize(calls, elapsed, rss, args.warmup, [t.label for t in targets])


def latency_stats(calls: list[tuple[float, str, float, str]], elapsed: float) -> dict:
    ok = np.array([c[2] for c in calls if c[3] == "OK"]) * 1e3
    return {
        "requests": len(calls),
        "errors": sum(c[3] != "OK" for c in calls),
        "throughput_rps": round(len(calls) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ok, 50)), 2) if ok.size else None,
        "p99_ms": round(float(np.percentile(ok, 99)), 2) if ok.size else None,
    }


def summarize(calls, elapsed: float, rss: list, warmup_s: float, labels: list[str]) -> dict:
    mib = 1024 * 1024
    steady = [(t, b) for t, b in rss if t >= warmup_s] or rss[-1:]
    t, b = np.array([x[0] for x in steady]), np.array([x[1] for x in steady], dtype=float)
    slope = float(np.polyfit(t, b, 1)[0]) * 60 / mib if len(steady) > 2 else 0.0
    return {
        "elapsed_s": round(elapsed, 1),
        "overall": latency_stats(calls, elapsed),
        "per_target": {
            label: latency_stats([c for c in calls if c[1] == label], elapsed) for label in labels
        },
        "errors_by_code": dict(Counter(c[3] for c in calls if c[3] != "OK")),
        "rss": {
            "warmup_s": warmup_s,
            "start_mib": round(rss[0][1] / mib, 1),
            "after_warmup_mib": round(b[0] / mib, 1),
            "end_mib": round(b[-1] / mib, 1),
            "max_mib": round(max(x[1] for x in rss) / mib, 1),
            "growth_after_warmup_mib": round((b[-1] - b[0]) / mib, 1),
            "slope_after_warmup_mib_per_min": round(slope, 2),
            "samples": [(s, round(v / mib, 1)) for s, v in rss],
        },
    }


def print_report(result: dict) -> None:
    print(f"{'target':<20} {'requests':>9} {'errors':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    rows = {**result["per_target"], "all": result["overall"]}
    for label, s in rows.items():
        print(
            f"{label:<20} {s['requests']:>9} {s['errors']:>7} {s['throughput_rps']:>8} "
            f"{s['p50_ms']!s:>8} {s['p99_ms']!s:>8}"
        )
    r = result["rss"]
    print(
        f"server RSS: {r['start_mib']} MiB at start, {r['after_warmup_mib']} after "
        f"{r['warmup_s']:.0f} s warm-up, {r['end_mib']} at the end (max {r['max_mib']}); "
        f"growth after warm-up {r['growth_after_warmup_mib']} MiB "
        f"({r['slope_after_warmup_mib_per_min']} MiB/min)"
    )
    if result["errors_by_code"]:
        print(f"errors: {result['errors_by_code']}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--seconds", type=float, default=180.0, help="length of the load")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop clients")
    parser.add_argument("--warmup", type=float, default=None, help="default: 1/6 of --seconds")
    parser.add_argument("--rss-interval", type=float, default=1.0, help="seconds per sample")
    parser.add_argument("--no-variant", dest="variant", action="store_false")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = args.seconds / 6
    return args


def server_env() -> dict[str, str]:
    """Defaults of `pareto serve`, except one ORT thread per request (32 clients share the
    cores anyway), no memory probe child processes, and quiet logs."""
    return {
        "PARETO_ORT_INTRA_OP_THREADS": "1",
        "PARETO_ORT_INTER_OP_THREADS": "1",
        "PARETO_MEASURE_MEMORY": "false",
        "PARETO_LOG_LEVEL": "WARNING",
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="pareto-load-") as tmp:
        gateway = GatewayProcess(Path(tmp) / "data", Path(tmp) / "server.log", server_env())
        gateway.start()
        try:
            targets = build_targets(gateway.address, Path(tmp), args.variant, print)
            print(f"load: {args.concurrency} clients, {args.seconds:.0f} s, {len(targets)} targets")
            result = run_load(gateway, targets, args)
        finally:
            exit_code = gateway.stop(timeout=60)
    print_report(result)
    report = {
        "bench": "load",
        "created_unix": int(started),
        "duration_s": round(time.time() - started, 1),
        "machine": machine_info(),
        "versions": package_versions(["pareto-gateway", "onnxruntime", "grpcio", "tritonclient"]),
        "settings": {
            "concurrency": args.concurrency,
            "seconds": args.seconds,
            "variant": args.variant,
            "server_env": server_env(),
        },
        "targets": [{"label": t.label, "model": t.model} for t in targets],
        "server_exit_code_after_sigterm": exit_code,
        **result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} ({report['duration_s']} s)")


if __name__ == "__main__":
    main()
