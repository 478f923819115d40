"""Compression: every technique's variant against its parent, measured side by side.

`python -m bench.compression [--threads 1] [--iterations N] [--only minilm|digits]`.
Each technique is applied straight from the registry (`compressors.registry.get(name)
.apply(...)`), then the parent and all variants of one model are measured in ONE
`compressors.measure.evaluate.evaluate` call: same process, same thread settings, latency rounds
interleaved model by model, so the machine's drift hits every model alike.

* MiniLM (b1, s32): quantize.dynamic (per-channel, and per-tensor for contrast) and
  convert.fp16 against fp32 ORT, fidelity measured on held-out English sentences
  (`examples.text`, not used for anything else).
* digits CNN: quantize.static, prune.structured (50% of channels + fine-tuning),
  low_rank.svd and cluster.kmeans at two settings each, on the held-out test split;
  calibration and fine-tuning use the training split. Digits speed is compared at batch 64:
  at batch 1 this 10k-parameter model takes ~15 us, which is mostly ORT's fixed overhead.

A technique that fails is reported with its reason and the others still run.
Results: a table on stdout and bench/results/compression.json.
"""

from __future__ import annotations

import argparse
import json
import operator
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO_ROOT, machine_info, package_versions
from compressors import registry
from compressors.base import Artifact, Dataset, StepContext
from compressors.measure.evaluate import EvaluationSettings, evaluate

RESULTS = REPO_ROOT / "bench" / "results" / "compression.json"
MODEL_CACHE = REPO_ROOT / ".pareto" / "examples"
MINILM_SEQ_LEN = 32
MINILM_SENTENCES = 1000  # 20% held out for fidelity, the rest unused (kept for calibration)
PACKAGES = ("onnx", "onnxruntime", "torch", "torch-pruning", "onnx2torch", "scikit-learn")
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt}


@dataclass(frozen=True)
class Target:
    metric: str  # a key of `ratios()`
    op: str  # ">=", "<=" or ">"
    limit: float

    def check(self, ratios: dict[str, float]) -> dict[str, Any]:
        value = ratios.get(self.metric)
        ok = value is not None and _OPS[self.op](value, self.limit)
        return {"target": f"{self.metric} {self.op} {self.limit:g}", "value": value, "pass": ok}


@dataclass(frozen=True)
class Alternative:
    label: str
    technique: str
    config: dict[str, Any]
    targets: tuple[Target, ...] = ()


@dataclass
class Suite:
    """One parent model, its datasets, what to make of it and how to measure it."""

    name: str
    parent: Artifact
    datasets: dict[str, Dataset]
    evaluation: Dataset
    alternatives: list[Alternative]
    settings: EvaluationSettings
    speed_batch: int


# --------------------------------------------------------------------------- the suites


def _artifact(path: Path) -> Artifact:
    from runtimes.registry import get_runtime

    session = get_runtime("onnxruntime_cpu").load(path)
    return Artifact(path, "onnx", session.signature)


def minilm_suite(settings: EvaluationSettings) -> Suite:
    from examples.models import export_minilm, tokenize
    from examples.text import english_sentences, split_sentences

    built = export_minilm(MODEL_CACHE / "minilm.onnx")
    calibration, held_out = split_sentences(english_sentences(MINILM_SENTENCES, seed=0))
    held = Dataset("minilm-heldout", tokenize(held_out, MINILM_SEQ_LEN))
    calib = Dataset("minilm-calib", tokenize(calibration[:64], MINILM_SEQ_LEN))
    alternatives = [
        Alternative(
            "int8 dynamic per-channel",
            "quantize.dynamic",
            {"per_channel": True},
            (
                Target("speedup", ">=", 1.6),
                Target("size_x", "<=", 0.26),
                Target("cosine_mean", ">=", 0.99),
            ),
        ),
        # for contrast: one scale per weight tensor is what hurts MiniLM's fidelity
        Alternative("int8 dynamic per-tensor", "quantize.dynamic", {"per_channel": False}),
        Alternative("fp16 (IO float32)", "convert.fp16", {"keep_io_types": True}),
    ]
    return Suite(
        "minilm", _artifact(built.path), {"calibration": calib}, held, alternatives, settings, 1
    )


def digits_suite(settings: EvaluationSettings) -> Suite:
    from examples.models import build_digits_cnn, digits_split

    built = build_digits_cnn(MODEL_CACHE / "digits_cnn.onnx")
    x_train, x_test, y_train, y_test = digits_split(0)
    train = Dataset("digits-train", {"pixels": x_train}, y_train)
    calib = Dataset("digits-calib", {"pixels": x_train[:256]})
    evaluation = Dataset("digits-test", {"pixels": x_test}, y_test)
    alternatives = [
        Alternative(
            "int8 static",
            "quantize.static",
            {"per_channel": True},
            (Target("size_x", "<=", 0.3), Target("accuracy_drop_pp", "<=", 0.5)),
        ),
        Alternative(
            "int8 static, QOperator",
            "quantize.static",
            {"per_channel": True, "format": "qoperator"},
            (Target("size_x", "<=", 0.3), Target("accuracy_drop_pp", "<=", 0.5)),
        ),
        Alternative(
            "50% channels + fine-tune",
            "prune.structured",
            {"ratio": 0.5, "finetune_epochs": 10, "finetune_lr": 1e-3},
            (Target("speedup", ">=", 1.3), Target("accuracy_drop_pp", "<=", 1.0)),
        ),
        Alternative("svd energy 0.95", "low_rank.svd", {"energy": 0.95}),
        Alternative("svd energy 0.8", "low_rank.svd", {"energy": 0.8}),
        Alternative("kmeans 16", "cluster.kmeans", {"clusters": 16}),
        Alternative("kmeans 4", "cluster.kmeans", {"clusters": 4}),
    ]
    datasets = {"calibration": calib, "training": train, "evaluation": evaluation}
    return Suite("digits", _artifact(built.path), datasets, evaluation, alternatives, settings, 64)


# --------------------------------------------------------------------------- running


def produce(suite: Suite, alt: Alternative, work: Path, threads: int) -> tuple[Any, dict]:
    """(artifact, step report), or (None, {"skipped": reason})."""
    try:
        technique = registry.get(alt.technique)
        config = registry.parse_config(alt.technique, alt.config)
    except Exception as exc:  # a config the technique does not take
        return None, {"skipped": f"{type(exc).__name__}: {exc}"}
    ctx = StepContext(work, suite.parent, dict(suite.datasets), threads=threads, seed=0)
    work.mkdir(parents=True)
    started = time.monotonic()
    try:
        result = technique.apply(suite.parent, config, ctx)
    except Exception as exc:  # a failing technique is reported, the bench goes on
        return None, {"skipped": f"apply failed: {type(exc).__name__}: {exc}"}
    report = {"seconds": round(time.monotonic() - started, 2), "report": result.report}
    return result.artifact, report


def _latency(m: dict[str, Any], batch: int) -> dict[str, float] | None:
    return next((e for e in m["latency"] if e["batch_size"] == batch), None)


def ratios(parent_m: dict[str, Any], m: dict[str, Any], batch: int) -> dict[str, float]:
    """Variant / parent figures (speedup = parent p50 / variant p50 at `batch`)."""
    out = {
        "size_x": m["size_bytes"] / parent_m["size_bytes"],
        "gzip_x": m["compressed_size_bytes"] / parent_m["compressed_size_bytes"],
        "params_x": m["parameters"] / parent_m["parameters"],
    }
    if parent_m["memory_bytes"] and m["memory_bytes"]:
        out["memory_x"] = m["memory_bytes"] / parent_m["memory_bytes"]
    lat, parent_lat = _latency(m, batch), _latency(parent_m, batch)
    if lat and parent_lat:
        out["speedup"] = parent_lat["p50_ms"] / lat["p50_ms"]
        out["throughput_x"] = lat["throughput_per_s"] / parent_lat["throughput_per_s"]
    q, pq = m["quality"], parent_m["quality"]
    if "accuracy" in q and "accuracy" in pq:
        out["accuracy_drop_pp"] = (pq["accuracy"] - q["accuracy"]) * 100
    for key in ("cosine_mean", "cosine_min", "top1_agreement"):
        if key in q:
            out[key] = q[key]
    return out


def run_suite(suite: Suite, scratch: Path, threads: int, log: Callable[[str], None]) -> dict:
    """Apply every alternative, then measure the parent and all variants in one run."""
    entries: list[dict[str, Any]] = []
    made: list[tuple[int, Artifact]] = []
    for k, alt in enumerate(suite.alternatives):
        log(f"{suite.name}: applying {alt.technique} ({alt.label})")
        artifact, report = produce(suite, alt, scratch / f"{suite.name}-{k}", threads)
        entries.append({**_describe(alt), **report})
        if artifact is None:
            log(f"{suite.name}: SKIPPED {alt.label}: {report['skipped']}")
        else:
            made.append((k, artifact))
    log(f"{suite.name}: measuring the parent and {len(made)} variants in one run")
    parent_m, variant_ms = evaluate(
        suite.parent, [a for _, a in made], suite.evaluation, suite.settings
    )
    for (k, _), m in zip(made, variant_ms, strict=True):
        r = ratios(parent_m, m, suite.speed_batch)
        checks = [t.check(r) for t in suite.alternatives[k].targets]
        entries[k].update(ratios=r, targets=checks, measurement=m)
    return {"speed_batch": suite.speed_batch, "parent": parent_m, "variants": entries}


def _describe(alt: Alternative) -> dict[str, Any]:
    return {"label": alt.label, "technique": alt.technique, "config": alt.config}


# --------------------------------------------------------------------------- output


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


_COLUMNS = (  # header, ratios key (None: from the measurement), format
    ("size x", "size_x", ".3f"),
    ("gzip x", "gzip_x", ".3f"),
    ("p50 ms", None, ".3f"),
    ("speedup", "speedup", ".2f"),
    ("mem x", "memory_x", ".2f"),
    ("acc drop pp", "accuracy_drop_pp", ".2f"),
    ("cos mean", "cosine_mean", ".4f"),
    ("top1 agr", "top1_agreement", ".3f"),
)


def _row(technique: str, label: str, cells: list[str], tail: str = "") -> str:
    widths = [max(8, len(h)) for h, _, _ in _COLUMNS]
    body = " ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))
    return f"{technique:<17} {label:<25} {body}  {tail}".rstrip()


def print_table(name: str, result: dict[str, Any]) -> None:
    batch = result["speed_batch"]
    print(f"\n{name} (speed at batch {batch}; ratios are variant / parent)")
    print(_row("technique", "variant", [h for h, _, _ in _COLUMNS], "targets"))
    parent_lat = _latency(result["parent"], batch)
    p50 = _fmt(parent_lat and parent_lat["p50_ms"], ".3f")
    print(_row("", "parent", ["1.000", "1.000", p50, *["-"] * 5]))
    for v in result["variants"]:
        if "skipped" in v:
            print(f"{v['technique']:<17} {v['label']:<25} SKIPPED: {v['skipped']}")
            continue
        lat = _latency(v["measurement"], batch)
        cells = [
            _fmt(lat and lat["p50_ms"], spec) if key is None else _fmt(v["ratios"].get(key), spec)
            for _, key, spec in _COLUMNS
        ]
        checks = ", ".join(
            f"{c['target']}: {'PASS' if c['pass'] else 'FAIL'}" for c in v["targets"]
        )
        print(_row(v["technique"], v["label"], cells, checks))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compression", description=__doc__)
    parser.add_argument("--threads", type=int, default=1, help="ORT/torch intra-op threads")
    parser.add_argument("--iterations", type=int, default=300, help="timed rounds per batch")
    parser.add_argument("--only", choices=("minilm", "digits"), help="run one suite")
    args = parser.parse_args(argv)
    builders = {
        "minilm": (minilm_suite, (1,)),
        "digits": (digits_suite, (1, 64)),
    }
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-compression-") as tmp:
        for name, (build, batches) in builders.items():
            if args.only and name != args.only:
                continue
            settings = EvaluationSettings(
                batch_sizes=batches, iterations=args.iterations, warmup=20, threads=args.threads
            )
            suite = build(settings)
            results[name] = run_suite(suite, Path(tmp), args.threads, print)
    for name, result in results.items():
        print_table(name, result)
    _write(results, args)
    return 0


def _write(results: dict[str, Any], args: argparse.Namespace) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "bench": "compression",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        "packages": package_versions(PACKAGES),
        "threads": args.threads,
        "iterations": args.iterations,
        "results": results,
    }
    RESULTS.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")
    print(f"\nwrote {RESULTS.relative_to(REPO_ROOT)}")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


if __name__ == "__main__":
    raise SystemExit(main())
