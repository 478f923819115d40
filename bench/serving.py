"""Serving overhead: the gateway (KServe v2 gRPC) against ONNX Runtime called directly.

`python -m bench.serving` (or `make bench`). For each case (MiniLM fp32 b1 s32, digits CNN
b1 and b64) and each concurrency (1, 8) it measures p50/p99 latency and throughput of

  (a) the gateway, through an unmodified `tritonclient.grpc.InferenceServerClient`
      (one client per worker thread), and
  (b) `onnxruntime.InferenceSession.run` in this process, built with the exact
      SessionOptions the gateway uses (`runtimes.onnxruntime_cpu.session_options_from`).

Both sides use the same ORT thread settings; the gateway's gRPC pool has as many workers
as the highest concurrency. This VM's speed drifts by tens of percent within seconds, so
the sides are measured side by side: at concurrency 1 requests interleave one by one, above
it short rounds alternate in order, and ratios are medians over round pairs. A transport
floor (calls that run no model) shows what any Python gRPC round trip costs here.
Results: a table on stdout and bench/results/serving.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
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
    run_round,
    summarize,
)

RESULTS = REPO_ROOT / "bench" / "results" / "serving.json"
MODEL_CACHE = REPO_ROOT / ".pareto" / "examples"
TARGET_P50_OVERHEAD_MS = 0.5
TARGET_THROUGHPUT_RATIO = 0.9
SIDES = ("direct", "gateway")


@dataclass(frozen=True)
class Case:
    label: str
    model: str
    batch: int
    inputs: dict[str, np.ndarray]
    output: str


def build_cases() -> tuple[dict[str, Path], list[Case]]:
    """Build (or reuse) both models; return their paths and the benchmark cases."""
    from examples.models import build_digits_cnn, export_minilm, tokenize
    from examples.text import english_sentences

    digits = build_digits_cnn(MODEL_CACHE / "digits_cnn.onnx")
    minilm = export_minilm(MODEL_CACHE / "minilm.onnx")
    x = digits.X_test
    tokens = tokenize(english_sentences(1, seed=0), seq_len=32)
    cases = [
        Case("minilm fp32 b1 s32", "minilm", 1, tokens, "embedding"),
        Case("digits b1", "digits", 1, {"pixels": np.ascontiguousarray(x[:1])}, "logits"),
        Case("digits b64", "digits", 64, {"pixels": np.ascontiguousarray(x[:64])}, "logits"),
    ]
    return {"minilm": minilm.path, "digits": digits.path}, cases


def gateway_call(client: Any, case: Case) -> Callable[[], np.ndarray]:
    """One prepared KServe request; the call returns the decoded output array."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    inputs = []
    for name, array in case.inputs.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    outputs = [grpcclient.InferRequestedOutput(case.output)]
    return lambda: client.infer(case.model, inputs, outputs=outputs).as_numpy(case.output)


def direct_call(session: Any, case: Case) -> Callable[[], np.ndarray]:
    names = [case.output]
    return lambda: session.run(names, case.inputs)[0]


class Bench:
    """Holds the sessions and clients; measures one (case, concurrency) cell pair."""

    def __init__(self, address: str, paths: dict[str, Path], ort_options: dict, workers: int):
        import onnxruntime as ort
        import tritonclient.grpc as grpcclient

        from runtimes.onnxruntime_cpu import PROVIDERS, session_options_from

        options = session_options_from(ort_options)
        self.sessions = {
            name: ort.InferenceSession(str(path), options, providers=list(PROVIDERS))
            for name, path in paths.items()
        }
        self.clients = [grpcclient.InferenceServerClient(address) for _ in range(workers)]

    def calls(self, side: str, case: Case, concurrency: int) -> list[Callable[[], Any]]:
        if side == "gateway":
            return [gateway_call(c, case) for c in self.clients[:concurrency]]
        session = self.sessions[case.model]
        return [direct_call(session, case) for _ in range(concurrency)]

    def check_same_output(self, case: Case) -> None:
        """Both sides must compute the same thing, or the comparison means nothing."""
        got = self.calls("gateway", case, 1)[0]()
        want = self.calls("direct", case, 1)[0]()
        if not np.allclose(got, want, rtol=1e-4, atol=1e-5):
            diff = float(np.abs(got - want).max())
            raise SystemExit(f"{case.label}: gateway output differs from direct (max {diff:g})")

    def measure(
        self, case: Case, concurrency: int, rounds: int, seconds: float, warmup: float
    ) -> dict[str, list[RoundResult]]:
        """Warm both sides up, then `rounds` rounds per side. At concurrency 1 the sides
        interleave request by request; above it whole rounds alternate in order."""
        calls = {side: self.calls(side, case, concurrency) for side in SIDES}
        for side in SIDES:
            run_round(calls[side], warmup)
        results: dict[str, list[RoundResult]] = {side: [] for side in SIDES}
        for i in range(rounds):
            if concurrency == 1:
                pair = run_interleaved({side: calls[side][0] for side in SIDES}, 2 * seconds)
            else:
                order = SIDES if i % 2 == 0 else SIDES[::-1]
                pair = {side: run_round(calls[side], seconds) for side in order}
            for side in SIDES:
                results[side].append(pair[side])
        return results

    def close(self) -> None:
        for client in self.clients:
            client.close()


def ratios(raw: dict[tuple[str, int], dict[str, list[RoundResult]]]) -> list[dict[str, Any]]:
    """Per case: gateway p50 overhead (ms) at concurrency 1 and throughput ratio at the
    highest concurrency, both as the median over alternating round pairs."""
    top = max(conc for _, conc in raw)
    out = []
    for case in dict.fromkeys(label for label, _ in raw):
        overhead = paired(raw[case, 1]["direct"], raw[case, 1]["gateway"])["p50_diff_ms"]
        ratio = paired(raw[case, top]["direct"], raw[case, top]["gateway"])["throughput_ratio"]
        out.append(
            {
                "case": case,
                "p50_overhead_ms_c1": overhead,
                "throughput_ratio": ratio,
                "throughput_ratio_concurrency": top,
                "p50_overhead_ok": overhead <= TARGET_P50_OVERHEAD_MS,
                "throughput_ok": ratio >= TARGET_THROUGHPUT_RATIO,
            }
        )
    return out


def transport_floor(address: str, seconds: float) -> dict[str, float]:
    """p50 of calls that run no model: what any Python gRPC round trip costs here."""
    import grpc
    import tritonclient.grpc as grpcclient
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        check = [lambda: stub.Check(health_pb2.HealthCheckRequest())]
        run_round(check, seconds / 4)
        health_ms = summarize([run_round(check, seconds)])["p50_ms"]
    client = grpcclient.InferenceServerClient(address)
    try:
        live = [client.is_server_live]
        run_round(live, seconds / 4)
        live_ms = summarize([run_round(live, seconds)])["p50_ms"]
    finally:
        client.close()
    return {"grpc_health_check_p50_ms": health_ms, "tritonclient_is_server_live_p50_ms": live_ms}


def print_report(
    cells: list[dict[str, Any]], summary: list[dict[str, Any]], floor: dict[str, float]
) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Serving: gateway (tritonclient gRPC) vs ONNX Runtime direct")
    for column in ("case", "conc", "side", "p50 ms", "p99 ms", "req/s", "requests"):
        table.add_column(column, justify="left" if column in ("case", "side") else "right")
    for c in cells:
        table.add_row(
            c["case"],
            str(c["concurrency"]),
            c["side"],
            f"{c['p50_ms']:.3f}",
            f"{c['p99_ms']:.3f}",
            f"{c['throughput_rps']:.0f}",
            str(c["requests"]),
        )
    top = summary[0]["throughput_ratio_concurrency"]
    ratio_table = Table(
        title=f"Gateway vs direct, median of round pairs. Targets: p50 overhead <= "
        f"{TARGET_P50_OVERHEAD_MS} ms at c1, throughput >= {TARGET_THROUGHPUT_RATIO:.0%} at c{top}"
    )
    for column in ("case", "p50 overhead c1 (ms)", f"throughput ratio c{top}"):
        ratio_table.add_column(column, justify="left" if column == "case" else "right")
    for r in summary:
        ratio_table.add_row(
            r["case"],
            _mark(f"{r['p50_overhead_ms_c1']:.3f}", r["p50_overhead_ok"]),
            _mark(f"{r['throughput_ratio']:.1%}", r["throughput_ok"]),
        )
    console = Console()
    console.print(table)
    console.print(ratio_table)
    console.print(
        "transport floor (no model run, c1): gRPC health check p50 "
        f"{floor['grpc_health_check_p50_ms']:.3f} ms, tritonclient is_server_live p50 "
        f"{floor['tritonclient_is_server_live_p50_ms']:.3f} ms"
    )


def _mark(text: str, ok: bool) -> str:
    return f"[green]{text} ok[/]" if ok else f"[red]{text} miss[/]"


def upload(address: str, paths: dict[str, Path]) -> None:
    from pareto_cli.client import ParetoClient

    with ParetoClient(address) as client:
        for name, path in paths.items():
            client.upload(path, name)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__)
    parser.add_argument("--rounds", type=int, default=12, help="rounds per cell and side")
    parser.add_argument("--seconds", type=float, default=0.5, help="length of one round")
    parser.add_argument("--warmup", type=float, default=0.5, help="warm-up seconds per side")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--intra-op-threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


Raw = dict[tuple[str, int], dict[str, list[RoundResult]]]


def measure_all(bench: Bench, cases: list[Case], args: argparse.Namespace) -> Raw:
    """Every (case, concurrency) cell, both sides; prints a line per cell as it goes."""
    raw: Raw = {}
    for case in cases:
        bench.check_same_output(case)
        for conc in sorted(args.concurrency):
            raw[case.label, conc] = bench.measure(
                case, conc, args.rounds, args.seconds, args.warmup
            )
            p50 = {side: summarize(r)["p50_ms"] for side, r in raw[case.label, conc].items()}
            print(
                f"  {case.label:<20} c={conc:<2} p50 direct {p50['direct']:.3f} ms, "
                f"gateway {p50['gateway']:.3f} ms",
                flush=True,
            )
    return raw


def cells_of(raw: Raw, cases: list[Case]) -> list[dict[str, Any]]:
    by_label = {case.label: case for case in cases}
    cells = []
    for (label, conc), sides in raw.items():
        case = by_label[label]
        for side, rounds in sides.items():
            cell = {"case": label, "model": case.model, "batch": case.batch}
            cells.append(cell | {"concurrency": conc, "side": side} | summarize(rounds))
    return cells


def server_env(args: argparse.Namespace) -> dict[str, str]:
    """The gateway's settings: same ORT threads as the direct side, one gRPC worker per
    concurrent client, no memory probe (it would run a child process during the bench)."""
    return {
        "PARETO_ORT_INTRA_OP_THREADS": str(args.intra_op_threads),
        "PARETO_ORT_INTER_OP_THREADS": "1",
        "PARETO_GRPC_WORKERS": str(max(args.concurrency)),
        "PARETO_MEASURE_MEMORY": "false",
        "PARETO_LOG_LEVEL": "WARNING",
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the gateway, upload, measure everything, stop it; cells, ratios and floor."""
    if 1 not in args.concurrency:
        raise SystemExit("--concurrency must include 1 (the latency overhead is taken there)")
    ort_options = {"intra_op_threads": args.intra_op_threads, "inter_op_threads": 1}
    paths, cases = build_cases()
    with tempfile.TemporaryDirectory(prefix="pareto-bench-") as tmp:
        server = GatewayProcess(Path(tmp) / "data", Path(tmp) / "server.log", server_env(args))
        server.start()
        bench = None
        try:
            upload(server.address, paths)
            bench = Bench(server.address, paths, ort_options, max(args.concurrency))
            raw = measure_all(bench, cases, args)
            floor = transport_floor(server.address, args.seconds * 2)
        finally:
            if bench is not None:
                bench.close()
            code = server.stop()
        if code != 0:
            raise SystemExit(f"gateway exited with code {code}:\n{server.log_tail()}")
    return {
        "cells": cells_of(raw, cases),
        "ratios": ratios(raw),
        "transport_floor": floor,
        "settings": settings_of(args, ort_options),
    }


def settings_of(args: argparse.Namespace, ort_options: dict[str, int]) -> dict[str, Any]:
    return {
        "server": "subprocess (pareto serve) on 127.0.0.1",
        "server_env": server_env(args),
        "direct_session": "onnxruntime.InferenceSession, SessionOptions from "
        "runtimes.onnxruntime_cpu.session_options_from(ort_options)",
        "ort_options": ort_options,
        "grpc_workers": max(args.concurrency),
        "client": "tritonclient.grpc.InferenceServerClient, one per worker thread",
        "concurrency": sorted(args.concurrency),
        "rounds": args.rounds,
        "round_seconds": args.seconds,
        "warmup_seconds": args.warmup,
        "order": "c1: sides interleaved request by request; c>1: whole rounds alternate "
        "first/second; ratios are medians over round pairs",
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.time()
    measured = run(args)
    print_report(measured["cells"], measured["ratios"], measured["transport_floor"])
    report = {
        "bench": "serving",
        "created_unix": int(started),
        "duration_s": round(time.time() - started, 1),
        "machine": machine_info(),
        "versions": package_versions(
            ["pareto-gateway", "onnxruntime", "onnx", "grpcio", "tritonclient", "numpy", "protobuf"]
        ),
        "targets": {
            "p50_overhead_ms_c1": TARGET_P50_OVERHEAD_MS,
            "throughput_ratio_min": TARGET_THROUGHPUT_RATIO,
        },
        **measured,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} ({report['duration_s']} s)")


if __name__ == "__main__":
    main()
