"""Scale: the same digits search with search.parallelism 1 and 2, side by side in one run;
the wall-time ratio (target <= 0.65x on 2 cores) and the two frontiers compared.

`python -m bench.scale [--trials N] [--seed S] [--rounds R] [--ray]`.

Each run is a fresh `pareto serve` (subprocess, fresh data dir, 1 job thread, memory probe
off) given the digits CNN and its datasets, then one search job: every technique the
search knows, latency p50 at batch 64 and size, accuracy within 1 pp, the same trial
budget and seed; only `parallelism` differs. Locally, parallelism 1 runs the trials in
the search's worker and 2 in two trial processes; with `--ray` both also run on a
throw-away local Ray cluster (2 CPUs) and PostgreSQL (a fresh database per run; the test
helpers start both, as in the tests), each trial a Ray task. The machine is shared, so
before each run it waits (up to 15 min) until other work keeps under 15% of the CPUs busy,
and records the busy share before and right after the run. The wall time runs from
CreateJob to the job's final event (so it includes starting workers, the final
measurement of the frontier and storing it); `--rounds` alternates the order (1, 2, then
2, 1, ...) and keeps the median.

The frontiers differ (parallel trials are sampled with fewer results known: Optuna's
constant liar), so they are compared on what they find: the hypervolume each dominates
in (accuracy drop, latency ratio, size ratio) against a shared reference, and how many of
one's points the other dominates.

Writes bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO_ROOT, GatewayProcess, machine_info, package_versions
from bench.frontiers import dominated_count, hypervolume, reference
from bench.machine_load import busy_share, wait_quiet
from pareto.v1 import jobs_pb2
from pareto_cli.client import ParetoClient
from pareto_cli.datasets import upload_dataset

RESULTS = REPO_ROOT / "bench" / "results"
MODEL_CACHE = REPO_ROOT / ".pareto" / "examples"
PACKAGES = ("onnxruntime", "optuna", "torch", "ray")
TARGET_RATIO = 0.65
GiB = 1024**3
QUIET = 0.15  # before each run, wait until other work keeps less of the CPUs busy
QUIET_WAIT_S = 900


def upload_digits(client: ParetoClient, scratch: Path) -> dict[str, str]:
    from examples.datasets import example_datasets
    from examples.models import build_digits_cnn

    client.upload(build_digits_cnn(MODEL_CACHE / "digits_cnn.onnx").path, "digits")
    data = example_datasets()
    names = {"evaluation": "digits-eval", "calibration": "digits-calib", "training": "digits-train"}
    for name in names.values():
        np.savez(scratch / f"{name}.npz", **data[name])
        upload_dataset(client, scratch / f"{name}.npz", name)
    return names


def search_request(datasets: dict[str, str], trials: int, seed: int, parallelism: int):
    request = jobs_pb2.CreateJobRequest(model="digits", datasets=datasets)
    request.evaluation.CopyFrom(jobs_pb2.EvaluationSettings(batch_sizes=[64], iterations=100))
    spec = request.search
    spec.objectives.extend(["latency_p50", "size"])
    spec.constraints.max_quality_drop = 0.01
    spec.n_trials, spec.seed, spec.parallelism, spec.batch_size = trials, seed, parallelism, 64
    return request


def front(result: jobs_pb2.SearchResult) -> list[tuple[float, ...]]:
    by_number = {t.number: t for t in result.trials}
    points = []
    for number in result.frontier:
        t = by_number[number]
        drop = (result.parent.quality - t.metrics.quality) * 100
        points.append((drop, t.objectives["latency_p50"], t.objectives["size"]))
    return points


def run_search(
    env: dict[str, str], trials: int, seed: int, parallelism: int, quiet_wait_s: float, log
) -> dict:
    with tempfile.TemporaryDirectory(prefix="pareto-bench-scale-") as tmp:
        base = {"PARETO_JOB_THREADS": "1", "PARETO_MEASURE_MEMORY": "false"}
        gateway = GatewayProcess(Path(tmp) / "data", Path(tmp) / "server.log", base | env)
        gateway.start()
        try:
            with ParetoClient(gateway.address) as client:
                datasets = upload_digits(client, Path(tmp))
                busy = wait_quiet(QUIET, quiet_wait_s)
                started = time.monotonic()
                job = client.jobs.CreateJob(search_request(datasets, trials, seed, parallelism))
                for _ in client.jobs.WatchJob(jobs_pb2.WatchJobRequest(id=job.id)):
                    pass
                wall = time.monotonic() - started
                after = busy_share()  # its own workers have ended: others' share
                job = client.jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id))
                result = client.jobs.GetSearch(jobs_pb2.GetSearchRequest(id=job.id))
        finally:
            gateway.stop()
    ran = [t for t in result.trials if t.worker]
    trial_s = sum(t.seconds for t in ran)
    log(
        f"  parallelism {parallelism}: {wall:.1f} s, {jobs_pb2.JobState.Name(job.state)}, "
        f"trials ran {trial_s:.1f} s in all (mean {trial_s / max(1, len(ran)):.2f} s)"
    )
    return {
        "parallelism": parallelism,
        "wall_s": round(wall, 1),
        # the CPUs' busy share just before the run (other work) and just after it
        "busy_before": round(busy, 2),
        "busy_after": round(after, 2),
        "state": jobs_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_"),
        "trials": len(result.trials),
        "ran": len(ran),
        "workers": len({t.worker.split(" run ")[0] for t in ran}),
        "frontier_size": len(result.frontier),
        # where the time goes: the trials' own seconds (summed; a trial's seconds include
        # any wait for a CPU) against the wall time; trials_s / wall_s is the trials'
        # effective concurrency, what is left of wall_s - trials_s / parallelism is
        # set-up, asking/telling the study and the final frontier measurement
        "trials_s": round(trial_s, 1),
        "mean_trial_s": round(trial_s / max(1, len(ran)), 2),
        "concurrency": round(trial_s / wall, 2),
        "front": front(result),
    }


def compare(mode: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    one = [r for r in runs if r["parallelism"] == 1]
    two = [r for r in runs if r["parallelism"] == 2]
    ratio = statistics.median(r["wall_s"] for r in two) / statistics.median(
        r["wall_s"] for r in one
    )
    a, b = one[0]["front"], two[0]["front"]  # the first round's frontiers
    ref = reference(a, b)
    hv_a, hv_b = hypervolume(a, ref), hypervolume(b, ref)
    return {
        "mode": mode,
        "target": f"{mode}: wall time parallelism 2 / 1 <= {TARGET_RATIO}",
        "value": round(ratio, 3),
        "met": ratio <= TARGET_RATIO,
        "hypervolume_p1": round(hv_a, 5),
        "hypervolume_p2": round(hv_b, 5),
        "hypervolume_ratio": round(hv_b / hv_a, 3) if hv_a else None,
        "p1_points_dominated_by_p2": dominated_count(a, b),
        "p2_points_dominated_by_p1": dominated_count(b, a),
        "reference": [round(x, 4) for x in ref],
    }


def measure(
    mode: str, env: Callable[[], dict[str, str]], args: argparse.Namespace, log
) -> list[dict]:
    runs = []
    for k in range(args.rounds):
        for parallelism in (1, 2) if k % 2 == 0 else (2, 1):
            log(f"{mode}: round {k + 1}, parallelism {parallelism}, {args.trials} trials")
            run = run_search(env(), args.trials, args.seed, parallelism, args.quiet_wait, log)
            runs.append({"mode": mode, **run})
    return runs


@contextlib.contextmanager
def ray_cluster() -> Iterator[Callable[[], dict[str, str]]]:
    """The environment of a gateway on a throw-away Ray head (2 CPUs) and PostgreSQL, with
    a fresh database for each run."""
    from tests.helpers.postgres_server import PostgresServer, find_bin_dir
    from tests.helpers.ray_cluster import RayHead, ray_command, ray_env

    bin_dir, command = find_bin_dir(), ray_command()
    if bin_dir is None or command is None:
        raise SystemExit("--ray needs PostgreSQL's binaries and Ray: run `make install`")
    postgres, head = PostgresServer(bin_dir).start(), RayHead(command).start()
    base = {"PARETO_JOB_MEMORY_LIMIT_BYTES": str(4 * GiB), "PARETO_RAY_ADDRESS": head.address}
    try:
        yield lambda: base | ray_env() | {"PARETO_DATABASE_URL": postgres.create_database()}
    finally:
        head.stop()
        postgres.stop()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--trials", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ray", action="store_true", help="also on a throw-away Ray cluster")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=QUIET_WAIT_S,
        help="seconds to wait before each run for the CPUs to be quiet (then run anyway)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()

    def log(text: str) -> None:
        print(f"[{time.monotonic() - started:6.0f}s] {text}", flush=True)

    runs = measure("local", dict, args, log)
    comparisons = [compare("local", runs)]
    if args.ray:
        with ray_cluster() as env:
            on_ray = measure("ray", env, args, log)
        runs += on_ray
        comparisons.append(compare("ray", on_ray))
    results = {
        "machine": machine_info(),
        "packages": package_versions(PACKAGES),
        "trials": args.trials,
        "seed": args.seed,
        "rounds": args.rounds,
        "quiet_below": QUIET,
        "runs": [{k: v for k, v in r.items() if k != "front"} for r in runs],
        "comparisons": comparisons,
        "duration_s": round(time.monotonic() - started, 1),
    }
    out = RESULTS / "scale.json"
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    for c in comparisons:
        log(
            f"{c['mode']}: wall ratio {c['value']} (target <= {TARGET_RATIO}); hypervolume "
            f"p2/p1 {c['hypervolume_ratio']}"
        )
    log(f"wrote {out.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
