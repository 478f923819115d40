"""Transformers: MiniLM quantized statically (transformer mode, SmoothQuant) and weight-only
(4 bits: RTN, HQQ, GPTQ), and pruned (heads and FFN neurons, prune.transformer), side by
side with its fp32 parent and quantize.dynamic.

`python -m bench.transformers [--threads 1] [--iterations N] [--calibration N]`. Every
variant is made with the technique from the registry, then the parent and all variants
are measured in ONE `compressors.measure.evaluate.evaluate` call (same process, latency
rounds interleaved model by model) at batch 1, sequence 32, on held-out English sentences
(`examples.text`) that neither calibration nor anything else used. Speed-ups are p50
ratios to fp32 and to quantize.dynamic of the same run; fidelity is the mean cosine of the
sentence embeddings (the model's output is mean-pooled) to fp32, plus nearest-neighbour
agreement. The targets of issue #16 are recorded met or missed. The prune.transformer rows
(`bench.transformers_prune`, `--prune-steps` distillation steps, 0 = skip them) are pruned
from the Hugging Face folder and distilled on the other 80% of the sentences; every
variant's speed is also measured at batch 8, sequence 128 (`speedup_b8_s128`).

Results: a table on stdout and bench/results/transformers.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, machine_info, package_versions
from bench.compression import Alternative, Suite, Target, _artifact, produce, ratios
from compressors.base import Artifact, Dataset
from compressors.measure.evaluate import EvaluationSettings, evaluate

RESULTS = REPO_ROOT / "bench" / "results" / "transformers.json"
MODEL_CACHE = REPO_ROOT / ".pareto" / "examples"
SEQ_LEN = 32
SENTENCES = 1000  # 20% held out (200 sentences), calibration from the other 80%
PACKAGES = ("onnx", "onnxruntime", "torch", "numpy")
NEIGHBOURS = ("nn_top1_agreement", "nn_overlap_at_5", "pairwise_spearman")
DYNAMIC = "int8 dynamic (quantize.dynamic)"
STATIC = "int8 static, transformer mode"
INT4 = ("int4 weight-only RTN", "int4 weight-only HQQ", "int4 weight-only GPTQ")
LONG_SEQ = 128
LONG_BATCH = 8
NOT_MEASURED: list[dict[str, str]] = []


def alternatives(calibration: int) -> list[Alternative]:
    speed = (Target("speedup", ">=", 2.2), Target("speedup_vs_dynamic", ">", 1.0))
    small = Target("size_x", "<=", 0.2)
    samples = {"calibration_samples": calibration}
    return [
        Alternative(DYNAMIC, "quantize.dynamic", {}),
        Alternative(
            STATIC, "quantize.static", samples, (*speed, Target("cosine_mean", ">=", 0.99))
        ),
        Alternative(
            "int8 static, SmoothQuant 0.7 + entropy",
            "quantize.static",
            {**samples, "method": "entropy", "smooth_quant_alpha": 0.7},
        ),
        Alternative(
            "int8 static, percentile", "quantize.static", {**samples, "method": "percentile"}
        ),
        Alternative(
            "int8 static, every op (contrast)",
            "quantize.static",
            {**samples, "transformer": "never"},
        ),
        Alternative(INT4[0], "quantize.weight_only", {"algorithm": "rtn"}, (small,)),
        Alternative(INT4[1], "quantize.weight_only", {"algorithm": "hqq"}, (small,)),
        Alternative(INT4[2], "quantize.weight_only", {"algorithm": "gptq", **samples}, (small,)),
        Alternative("int8 weight-only RTN", "quantize.weight_only", {"bits": 8}),
    ]


def minilm_suite(settings: EvaluationSettings, calibration: int) -> Suite:
    from examples.models import export_minilm, tokenize
    from examples.text import english_sentences, split_sentences

    built = export_minilm(MODEL_CACHE / "minilm.onnx")
    train, held_out = split_sentences(english_sentences(SENTENCES, seed=0))
    held = Dataset("minilm-heldout", tokenize(held_out, SEQ_LEN))
    calib = Dataset("minilm-calib", tokenize(train[:calibration], SEQ_LEN))
    distill = Dataset("minilm-train", tokenize(train, SEQ_LEN))
    parent = _artifact(built.path)
    alts = alternatives(calibration)
    datasets = {"calibration": calib, "training": distill}
    return Suite("minilm", parent, datasets, held, alts, settings, 1)


def run(suite: Suite, scratch: Path, threads: int, prune_steps: int) -> dict[str, Any]:
    """Make every variant, measure all of them with the parent in one run."""
    from bench.transformers_prune import make

    entries: list[dict[str, Any]] = []
    made: list[tuple[int, Artifact]] = []
    targets: list[tuple[Target, ...]] = []
    for k, alt in enumerate(suite.alternatives):
        print(f"applying {alt.technique} ({alt.label})", flush=True)
        artifact, report = produce(suite, alt, scratch / f"alt-{k}", threads)
        entries.append({"label": alt.label, "technique": alt.technique, "config": alt.config})
        entries[-1].update(report)
        targets.append(alt.targets)
        if artifact is not None:
            made.append((k, artifact))
    train = suite.datasets["training"].inputs
    for row, artifact, report in make(suite.parent, train, scratch, prune_steps, threads):
        config = {
            "head_ratio": row.heads, "ffn_ratio": row.ffn, "refit": row.refit,
            "recovery": row.recovery,
        }  # fmt: skip
        entries.append({"label": row.label, "technique": "prune.transformer", "config": config})
        entries[-1].update(report, recovery_steps=prune_steps if row.recovery else 0)
        targets.append(row.targets)
        if artifact is not None:
            made.append((len(entries) - 1, artifact))
    print(f"measuring the parent and {len(made)} variants in one run", flush=True)
    parent_m, measured = evaluate(
        suite.parent, [a for _, a in made], suite.evaluation, suite.settings
    )
    for (k, _), m in zip(made, measured, strict=True):
        r = ratios(parent_m, m, suite.speed_batch)
        r.update({key: m["quality"][key] for key in NEIGHBOURS if key in m["quality"]})
        entries[k].update(ratios=r, measurement=m)
    _long_sequences(suite, made, entries)
    _against_dynamic(entries)
    for entry, checks in zip(entries, targets, strict=True):
        if "ratios" in entry:
            entry["targets"] = [t.check(entry["ratios"]) for t in checks]
    p50 = parent_m["latency"][0]["p50_ms"]
    return {
        "speed_batch": suite.speed_batch,
        "parent_p50_ms": p50,
        "parent": parent_m,
        "variants": entries,
    }


def _long_sequences(
    suite: Suite, made: list[tuple[int, Artifact]], entries: list[dict[str, Any]]
) -> None:
    """speedup_b8_s128: the parent's p50 over each variant's at batch 8, sequence 128."""
    from examples.models import tokenize
    from examples.text import english_sentences

    sentences = [" ".join(english_sentences(4, seed=100 + i)) for i in range(LONG_BATCH * 4)]
    long = Dataset("minilm-long", tokenize(sentences, LONG_SEQ))
    settings = EvaluationSettings(
        batch_sizes=(LONG_BATCH,),
        iterations=max(10, suite.settings.iterations // 10),
        warmup=3,
        threads=suite.settings.threads,
    )
    print(f"measuring b{LONG_BATCH} s{LONG_SEQ} latency", flush=True)
    parent_m, measured = evaluate(suite.parent, [a for _, a in made], long, settings)
    base = parent_m["latency"][0]["p50_ms"]
    for (k, _), m in zip(made, measured, strict=True):
        entries[k]["ratios"]["speedup_b8_s128"] = base / m["latency"][0]["p50_ms"]
        entries[k]["p50_ms_b8_s128"] = m["latency"][0]["p50_ms"]


def _against_dynamic(entries: list[dict[str, Any]]) -> None:
    """speedup_vs_dynamic: quantize.dynamic's p50 over each variant's, same run."""
    dynamic = next((e for e in entries if e["label"] == DYNAMIC and "ratios" in e), None)
    for entry in entries:
        if dynamic is not None and "speedup" in entry.get("ratios", {}):
            entry["ratios"]["speedup_vs_dynamic"] = (
                entry["ratios"]["speedup"] / dynamic["ratios"]["speedup"]
            )


def best_int4(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The int4 weight-only variant with the best fidelity, and the issue's targets on it."""
    int4 = [e for e in entries if e["label"] in INT4 and "ratios" in e]
    if not int4:
        return {"label": "none measured", "targets": []}
    best = max(int4, key=lambda e: e["ratios"]["cosine_mean"])
    checks = (Target("size_x", "<=", 0.2), Target("cosine_mean", ">=", 0.98))
    r = best["ratios"]
    return {
        "label": best["label"],
        "size_x": r["size_x"],
        "speedup": r.get("speedup"),
        "cosine_mean": r["cosine_mean"],
        "targets": [t.check(r) for t in checks],
    }


COLUMNS = (
    "size_x",
    "params_x",
    "speedup",
    "speedup_b8_s128",
    "speedup_vs_dynamic",
    "cosine_mean",
    "cosine_min",
)


def print_table(result: dict[str, Any]) -> None:
    parent_p50 = result["parent"]["latency"][0]["p50_ms"]
    print(f"\nMiniLM b1 s32: fp32 p50 {parent_p50:.3f} ms; ratios are variant / fp32")
    print(f"{'variant':<52}" + "".join(f"{c:>16}" for c in COLUMNS) + "  targets")
    for v in result["variants"]:
        if "ratios" not in v:
            print(f"{v['label']:<52} SKIPPED: {v.get('skipped')}")
            continue
        cells = "".join(f"{v['ratios'].get(c, float('nan')):>16.4f}" for c in COLUMNS)
        checks = ", ".join(
            f"{c['target']}: {'MET' if c['pass'] else 'MISSED'}" for c in v["targets"]
        )
        print(f"{v['label']:<52}{cells}  {checks}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transformers", description=__doc__)
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads")
    parser.add_argument("--iterations", type=int, default=300, help="timed rounds")
    parser.add_argument("--calibration", type=int, default=128, help="calibration sentences")
    parser.add_argument(
        "--prune-steps", type=int, default=300, help="distillation steps of prune.transformer"
    )
    args = parser.parse_args(argv)
    settings = EvaluationSettings(
        batch_sizes=(1,), iterations=args.iterations, warmup=20, threads=args.threads
    )
    started = time.monotonic()
    suite = minilm_suite(settings, args.calibration)
    with tempfile.TemporaryDirectory(prefix="bench-transformers-") as tmp:
        result = run(suite, Path(tmp), args.threads, args.prune_steps)
    result["weight_only_int4_best"] = best_int4(result["variants"])
    result["not_measured"] = NOT_MEASURED
    print_table(result)
    _write(result, args, time.monotonic() - started)
    return 0


def _write(result: dict[str, Any], args: argparse.Namespace, seconds: float) -> None:
    doc = {
        "bench": "transformers",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "duration_s": round(seconds, 1),
        "machine": machine_info(),
        "packages": package_versions(PACKAGES),
        "threads": args.threads,
        "iterations": args.iterations,
        "calibration_sentences": args.calibration,
        "prune_recovery_steps": args.prune_steps,
        "held_out_sentences": SENTENCES // 5,
        "results": {"minilm": result},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")
    print(f"\nwrote {RESULTS.relative_to(REPO_ROOT)}")


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


if __name__ == "__main__":
    raise SystemExit(main())
