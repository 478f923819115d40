"""Routing cost: the router's decision alone, and a two-target endpoint end to end.

`python -m bench.routing` (part of `make bench`). Two measurements:

  1. Router decision (in this process): `Route.choose` on a two-target table, timed call by
     call with perf_counter_ns, for weighted random, sticky (a route key) and pinned
     requests. Goal: p50 <= 20 us.
  2. End to end (a `pareto serve` subprocess, unmodified tritonclient, batch 1, digits
     CNN): the model served plainly (`digits`) against an endpoint splitting 50/50 between
     two versions of it (`digits-ab`), interleaved request by request so both sides see the
     same machine noise; the overhead is the median over round pairs of the p50 difference.

Results: a table on stdout and bench/results/routing.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    REPO_ROOT,
    GatewayProcess,
    RoundResult,
    machine_info,
    package_versions,
    paired,
    run_interleaved,
    summarize,
)

RESULTS = REPO_ROOT / "bench" / "results" / "routing.json"
MODEL_CACHE = REPO_ROOT / ".pareto" / "examples"
TARGET_DECISION_P50_US = 20.0


@dataclass(frozen=True)
class BenchTarget:
    name: str
    version: str
    weight: float
    is_shadow: bool = False


def decision_cost(calls: int) -> list[dict[str, Any]]:
    """p50/p99 of one `Route.choose` call (us), per kind of request."""
    from service.deployments.router import Route

    targets = [
        BenchTarget("1", "1", 50.0),
        BenchTarget("var-1a2b3c4d5e", "var-1a2b3c4d5e", 50.0),
        BenchTarget("1-shadow", "1", 0.0, is_shadow=True),
    ]
    route = Route("bench", targets)
    keys = [f"user-{i}" for i in range(calls)]
    kinds = {
        "weighted random": lambda i: route.choose(),
        "sticky (route key)": lambda i: route.choose("", keys[i]),
        "pinned (model_version)": lambda i: route.choose("var-1a2b3c4d5e"),
    }
    rows = []
    for kind, call in kinds.items():
        for i in range(min(calls, 2000)):  # warm-up
            call(i)
        times = np.empty(calls)
        clock = time.perf_counter_ns
        for i in range(calls):
            start = clock()
            call(i)
            times[i] = clock() - start
        us = times / 1e3
        rows.append(
            {
                "kind": kind,
                "calls": calls,
                "p50_us": float(np.percentile(us, 50)),
                "p99_us": float(np.percentile(us, 99)),
                "p50_ok": float(np.percentile(us, 50)) <= TARGET_DECISION_P50_US,
            }
        )
    return rows


def prepared_call(client: Any, model: str, x: np.ndarray):
    import tritonclient.grpc as grpcclient

    tensor = grpcclient.InferInput("pixels", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    outputs = [grpcclient.InferRequestedOutput("logits")]
    return lambda: client.infer(model, [tensor], outputs=outputs).as_numpy("logits")


def deploy(address: str, digits_path: Path) -> None:
    """digits v1 and v2 (the same file uploaded twice), `digits-ab` splitting them 50/50
    and `digits-one` serving v2 alone (the deployment path with nothing to choose)."""
    from pareto.v1 import deployments_pb2 as pb
    from pareto_cli.client import ParetoClient

    with ParetoClient(address) as client:
        client.upload(digits_path, "digits")
        client.upload(digits_path, "digits", new_version=True)
        stub = client.deployments
        targets = [pb.Target(model_version="1", weight=50), pb.Target(model_version="2", weight=50)]
        stub.CreateDeployment(
            pb.CreateDeploymentRequest(name="digits-ab", model="digits", targets=targets)
        )
        one = [pb.Target(model_version="2", weight=100)]
        stub.CreateDeployment(
            pb.CreateDeploymentRequest(name="digits-one", model="digits", targets=one)
        )


def end_to_end(args: argparse.Namespace) -> dict[str, Any]:
    import tritonclient.grpc as grpcclient

    from examples.models import build_digits_cnn

    digits = build_digits_cnn(MODEL_CACHE / "digits_cnn.onnx")
    x = np.ascontiguousarray(digits.X_test[:1], dtype=np.float32)
    env = {
        "PARETO_ORT_INTRA_OP_THREADS": "1",
        "PARETO_ORT_INTER_OP_THREADS": "1",
        "PARETO_MEASURE_MEMORY": "false",
        "PARETO_LOG_LEVEL": "WARNING",
    }
    with tempfile.TemporaryDirectory(prefix="pareto-bench-") as tmp:
        server = GatewayProcess(Path(tmp) / "data", Path(tmp) / "server.log", env)
        server.start()
        client = None
        try:
            deploy(server.address, digits.path)
            client = grpcclient.InferenceServerClient(server.address)
            calls = {
                "single model": prepared_call(client, "digits", x),
                "two-target endpoint": prepared_call(client, "digits-ab", x),
                "one-target endpoint": prepared_call(client, "digits-one", x),
            }
            if not np.allclose(calls["single model"](), calls["two-target endpoint"]()):
                raise SystemExit("the endpoint's answer differs from the model's")
            run_interleaved(calls, args.warmup)
            rounds: dict[str, list[RoundResult]] = {side: [] for side in calls}
            for _ in range(args.rounds):
                for side, result in run_interleaved(calls, 2 * args.seconds).items():
                    rounds[side].append(result)
        finally:
            if client is not None:
                client.close()
            code = server.stop()
        if code != 0:
            raise SystemExit(f"gateway exited with code {code}:\n{server.log_tail()}")
    sides = {side: summarize(r) for side, r in rounds.items()}
    two = rounds["two-target endpoint"]
    return {
        "case": "digits CNN b1, concurrency 1",
        "sides": sides,
        "p50_overhead_ms": paired(rounds["single model"], two)["p50_diff_ms"],
        "p50_split_cost_ms": paired(rounds["one-target endpoint"], two)["p50_diff_ms"],
        "note": "single model = plain serving (its name resolved through the server's "
        "short resolution cache, PARETO_RESOLVE_CACHE_S); an endpoint adds its routing table "
        "and per-target statistics. The split cost compares two endpoints that differ only "
        "in the choice.",
    }


def print_report(decisions: list[dict[str, Any]], e2e: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Router decision (goal: p50 <= {TARGET_DECISION_P50_US:g} us)")
    for column in ("request", "calls", "p50 us", "p99 us"):
        table.add_column(column, justify="left" if column == "request" else "right")
    for row in decisions:
        mark = "green" if row["p50_ok"] else "red"
        table.add_row(
            row["kind"],
            str(row["calls"]),
            f"[{mark}]{row['p50_us']:.2f}[/]",
            f"{row['p99_us']:.2f}",
        )
    side_table = Table(title=f"End to end, side by side: {e2e['case']}")
    for column in ("side", "requests", "p50 ms", "p99 ms"):
        side_table.add_column(column, justify="left" if column == "side" else "right")
    for side, s in e2e["sides"].items():
        side_table.add_row(side, str(s["requests"]), f"{s['p50_ms']:.3f}", f"{s['p99_ms']:.3f}")
    console = Console()
    console.print(table)
    console.print(side_table)
    console.print(
        f"p50, median of round pairs: two-target endpoint minus single model "
        f"{e2e['p50_overhead_ms'] * 1e3:+.1f} us; minus one-target endpoint "
        f"{e2e['p50_split_cost_ms'] * 1e3:+.1f} us"
    )
    console.print(f"[dim]{e2e['note']}[/]")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.routing", description=__doc__)
    parser.add_argument("--calls", type=int, default=100_000, help="router calls per kind")
    parser.add_argument("--rounds", type=int, default=10, help="end-to-end round pairs")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one round")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.time()
    decisions = decision_cost(args.calls)
    e2e = end_to_end(args)
    print_report(decisions, e2e)
    report = {
        "bench": "routing",
        "created_unix": int(started),
        "duration_s": round(time.time() - started, 1),
        "machine": machine_info(),
        "versions": package_versions(["pareto-gateway", "grpcio", "tritonclient", "numpy"]),
        "targets": {"decision_p50_us": TARGET_DECISION_P50_US},
        "decision": decisions,
        "end_to_end": e2e,
        "settings": {
            "calls": args.calls,
            "rounds": args.rounds,
            "round_seconds": args.seconds,
            "order": "sides interleaved request by request; overhead = median over round "
            "pairs of the p50 difference",
            "server": "pareto serve subprocess, 1 ORT thread, memory probe off",
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} ({report['duration_s']} s)")


if __name__ == "__main__":
    main()
