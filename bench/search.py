"""Search: the frontier a fixed trial budget finds, against the recipes a user tries by hand.

`python -m bench.search [--only digits|minilm] [--digits-trials N] [--minilm-trials N]`.

Per model, against a real `pareto serve` (subprocess, fresh data dir, 1 job thread):

1. the hand recipes as one ordinary compression job: dynamic int8 and static int8
   (per-channel, minmax, QDQ), kept even when they break the budget;
2. a search job with a fixed trial budget: objectives latency p50 and file size, quality
   within 1% (accuracy points for the digits CNN; mean cosine >= 0.99 for MiniLM), on
   ONNX Runtime CPU;
3. the parent, every frontier variant and both hand variants measured side by side in ONE
   `evaluate` call in this process (same inputs, latency rounds interleaved), so the
   comparison does not depend on when each job ran;
4. which frontier variants dominate each hand recipe (quality >=, latency <=, size <=,
   one strictly) on those side-by-side figures; for MiniLM, the issue's target as a record
   ("target", "value", "met") under models.minilm.targets, with each frontier variant's
   shortfalls (the axes on which it is worse than dynamic int8).

`--only` keeps the other model's figures in search.json.

Writes bench/results/search.json and bench/results/search_<model>.png (the search's trials
faded, the frontier and the hand recipes from the side-by-side run).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO_ROOT, GatewayProcess, machine_info, package_versions
from bench.search_compare import HAND, compare, plot_comparison
from pareto.v1 import jobs_pb2, variants_pb2
from pareto_cli.client import ParetoClient
from pareto_cli.datasets import upload_dataset

RESULTS = REPO_ROOT / "bench" / "results"
MODEL_CACHE = REPO_ROOT / ".pareto" / "examples"
PACKAGES = ("onnx", "onnxruntime", "optuna", "torch", "scikit-learn")


def digits_suite() -> dict[str, Any]:
    from examples.datasets import example_datasets
    from examples.models import build_digits_cnn

    data = example_datasets()
    return {
        "name": "digits",
        "model": build_digits_cnn(MODEL_CACHE / "digits_cnn.onnx").path,
        "datasets": {
            "evaluation": data["digits-eval"],
            "calibration": data["digits-calib"],
            "training": data["digits-train"],
        },
        "batch": 64,  # at batch 1 this 10k-parameter CNN is ORT's fixed overhead
        "iterations": 100,
        "techniques": [],  # every technique the search knows
    }


def minilm_suite() -> dict[str, Any]:
    from examples.datasets import example_datasets
    from examples.models import minilm_dir, tokenize
    from examples.text import english_sentences, split_sentences

    calibration, _ = split_sentences(english_sentences(1000, seed=0))
    return {
        "name": "minilm",
        # the Hugging Face folder: the gateway exports it, and prune.transformer starts
        # from it (its torch source)
        "model": minilm_dir(),
        "datasets": {
            "evaluation": example_datasets()["minilm-eval"],
            "calibration": tokenize(calibration[:64], 32),
        },
        "batch": 1,
        "iterations": 30,
        # what can move MiniLM on (quality, latency, size) in seconds per trial:
        # - quantize.dynamic: the recipe to beat, and a second step after low_rank.svd;
        # - quantize.static: transformer mode (linear layers only): faster than dynamic;
        # - quantize.weight_only (opt-in): 4/8-bit MatMulNBits (RTN, HQQ, GPTQ on the
        #   calibration set), the only one below dynamic's size (0.17x with int4);
        # - convert.fp16: near-lossless halving;
        # - low_rank.svd: fewer weights before a quantizer;
        # - prune.transformer (opt-in): heads and FFN neurons removed, re-fitted (about a
        #   minute) and possibly distilled (minutes), then maybe a quantizer.
        # Left out: the other reducers (onnx2torch cannot convert MiniLM: no structured
        # pruning, no student) and accuracy_aware (one layer at a time: minutes per trial).
        "techniques": [
            "quantize.dynamic",
            "quantize.static",
            "quantize.weight_only",
            "convert.fp16",
            "low_rank.svd",
            "prune.transformer",
        ],
        # the target: the search finds a variant that dominates this hand recipe
        "dominate": ["dynamic int8"],
    }


def _upload(
    client: ParetoClient, suite: dict[str, Any], scratch: Path
) -> tuple[str, dict[str, str]]:
    """(the stored parent's sha256: the ONNX the gateway searched, exported by it from a
    folder; the uploaded datasets' names by role)."""
    parent = client.upload(suite["model"], suite["name"])
    names = {}
    for role, arrays in suite["datasets"].items():
        path = scratch / f"{suite['name']}-{role}.npz"
        np.savez(path, **arrays)
        names[role] = f"{suite['name']}-{role}"
        upload_dataset(client, path, names[role])
    return parent.sha256, names


def _wait(client: ParetoClient, job_id: str, log: Any) -> jobs_pb2.Job:
    for event in client.jobs.WatchJob(jobs_pb2.WatchJobRequest(id=job_id)):
        if event.step.startswith("trial ") or event.state != jobs_pb2.JOB_STATE_RUNNING:
            log(f"  {event.message[:160]}")
    return client.jobs.GetJob(jobs_pb2.GetJobRequest(id=job_id))


def hand_job(client, suite, datasets, log) -> list[variants_pb2.Variant]:
    request = jobs_pb2.CreateJobRequest(model=suite["name"], datasets=datasets)
    for label, technique, config in HAND:
        step = request.recipes.add(name=label).steps.add(technique=technique)
        step.config.update(config)
    request.quality_budget.keep_failing = True
    request.evaluation.CopyFrom(
        jobs_pb2.EvaluationSettings(batch_sizes=[suite["batch"]], iterations=suite["iterations"])
    )
    job = _wait(client, client.jobs.CreateJob(request).id, log)
    get = client.variants.GetVariant
    return [get(variants_pb2.GetVariantRequest(id=v)) for v in job.variant_ids]


def search_job(client, suite, datasets, trials, log) -> tuple[jobs_pb2.SearchResult, float]:
    request = jobs_pb2.CreateJobRequest(model=suite["name"], datasets=datasets)
    request.evaluation.CopyFrom(
        jobs_pb2.EvaluationSettings(batch_sizes=[suite["batch"]], iterations=suite["iterations"])
    )
    spec = request.search
    spec.objectives.extend(["latency_p50", "size"])
    spec.constraints.max_quality_drop = 0.01
    spec.n_trials = trials
    spec.batch_size = suite["batch"]
    spec.techniques.extend(suite["techniques"])
    started = time.monotonic()
    job = _wait(client, client.jobs.CreateJob(request).id, log)
    seconds = time.monotonic() - started
    log(f"  search {job.id}: {jobs_pb2.JobState.Name(job.state)} in {seconds:.0f} s")
    return client.jobs.GetSearch(jobs_pb2.GetSearchRequest(id=job.id)), seconds


def frontier_variants(
    client: ParetoClient, result: jobs_pb2.SearchResult
) -> list[tuple[jobs_pb2.SearchTrial, variants_pb2.Variant]]:
    by_number = {t.number: t for t in result.trials}
    found = []
    for number in result.frontier:
        trial = by_number[number]
        if trial.variant_id:
            request = variants_pb2.GetVariantRequest(id=trial.variant_id)
            found.append((trial, client.variants.GetVariant(request)))
    return found


AXES = (("quality", "quality", 1), ("latency", "latency_x", -1), ("size", "size_x", -1))


def shortfalls(variant: dict[str, Any], hand: dict[str, Any]) -> list[str]:
    """Where a variant is worse than a hand recipe (side by side): why it does not dominate."""
    worse = []
    for axis, key, sign in AXES:
        if sign * (variant[key] - hand[key]) < 0:
            worse.append(f"{axis} {variant[key]:.4g} vs {hand[key]:.4g}")
    return worse


def dominance_targets(entry: dict[str, Any], labels: Any) -> list[dict[str, Any]]:
    """One record per hand recipe the search should beat: met when a frontier variant
    dominates it on the side-by-side figures (quality >=, latency <=, size <=, one strictly).
    The hand recipe itself does not count: a frontier trial that ran the same recipe (the same
    file, `same_file_trials`) "dominates" it only by latency noise between two measurements
    of one model. `shortfalls` says, per frontier trial, on which axes it is worse."""
    records = []
    for hand in entry["hand"]:
        if hand["label"] not in labels:
            continue
        same = [e["trial"] for e in entry["frontier"] if e.get("sha256") == hand.get("sha256")]
        beaten = [t for t in hand["dominated_by_frontier_trials"] if t not in same]
        records.append(
            {
                "target": f"a frontier variant dominates {hand['label']} (quality >=, "
                "latency <=, size <=, one strictly; side by side)",
                "value": f"trials {beaten}" if beaten else "none",
                "met": bool(beaten),
                "same_file_trials": same,
                "shortfalls": {
                    str(e["trial"]): shortfalls(e["side_by_side"], hand["side_by_side"])
                    for e in entry["frontier"]
                },
            }
        )
    return records


def run_model(suite: dict[str, Any], trials: int, threads: int, log: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pareto-bench-search-") as tmp:
        env = {"PARETO_JOB_THREADS": str(threads), "PARETO_MEASURE_MEMORY": "false"}
        gateway = GatewayProcess(Path(tmp) / "data", Path(tmp) / "server.log", env)
        gateway.start()
        try:
            with ParetoClient(gateway.address) as client:
                parent_sha256, datasets = _upload(client, suite, Path(tmp))
                log(f"{suite['name']}: hand recipes (one compression job)")
                hand = hand_job(client, suite, datasets, log)
                log(f"{suite['name']}: search, {trials} trials")
                result, seconds = search_job(client, suite, datasets, trials, log)
                frontier = frontier_variants(client, result)
                log(f"{suite['name']}: measuring parent, frontier and hand recipes side by side")
                entry = compare(
                    suite, parent_sha256, result, frontier, hand, Path(tmp) / "data", threads
                )
        finally:
            gateway.stop()
    entry["search"]["wall_s"] = round(seconds, 1)
    entry["targets"] = dominance_targets(entry, suite.get("dominate", ()))
    png = RESULTS / f"search_{suite['name']}.png"
    plot_comparison(result, entry, png)
    entry["plot"] = str(png.relative_to(REPO_ROOT))
    return entry


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__)
    parser.add_argument("--only", choices=["digits", "minilm"])
    parser.add_argument("--digits-trials", type=int, default=60)
    parser.add_argument("--minilm-trials", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()

    def log(text: str) -> None:
        print(f"[{time.monotonic() - started:6.0f}s] {text}", flush=True)

    suites = {
        "digits": (digits_suite, args.digits_trials),
        "minilm": (minilm_suite, args.minilm_trials),
    }
    results: dict[str, Any] = {
        "machine": machine_info(),
        "packages": package_versions(PACKAGES),
        "threads": args.threads,
        "models": {},
    }
    for name, (make, trials) in suites.items():
        if args.only in (None, name):
            results["models"][name] = run_model(make(), trials, args.threads, log)
    out = RESULTS / "search.json"
    if args.only and out.is_file():  # keep the other model's figures
        previous = json.loads(out.read_text()).get("models", {})
        results["models"] = {**previous, **results["models"]}
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    log(f"wrote {out.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
