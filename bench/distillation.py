"""Distillation, QAT and gradual pruning, measured side by side with their teachers.

`python -m bench.distillation [--threads 1] [--train-threads 2] [--iterations N]
[--only minilm|digits]`.
Every model goes through the registered techniques themselves (`distill.knowledge`,
`quantize.dynamic`, `quantize.qat`, `prune.gradual`) as a job's worker would run them, then
each teacher and its students are measured in ONE `compressors.measure.evaluate.evaluate` call
(latency rounds interleaved, same threads), on data never trained on.

* MiniLM: a 3-layer student (teacher layers 1, 3, 5: `examples.models.
  export_minilm_student`, uploaded as .pt2 in a real job) distilled with a cosine loss on
  unlabeled English sentences from `pydoc_data.topics`; a held-out fifth of the sentences
  is never trained on and scores mean cosine to the teacher and nearest-neighbour
  agreement (for each held-out sentence: is its nearest other sentence the same under
  student and teacher; and the overlap of the 5 nearest). Then int8 (quantize.dynamic) on
  top of the student. Speed at batch 1, sequence 32, ONNX Runtime, one thread.
* digits CNN: a width-scaled student (<= 1/4 of the teacher's parameters) trained with
  knowledge distillation and, from the same initialisation, seed and epochs, on labels
  alone, over 5 seeds, in two settings: every training image labeled (for both), and 20%
  labeled (labels-only trains on those; KD on all images unlabeled, labelled by the
  teacher). QAT int8 against PTQ int8 of the teacher in the same step; gradual pruning to
  80% sparsity.
Results: a summary on stdout and bench/results/distillation.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO_ROOT, machine_info, package_versions
from bench.compression import ratios
from bench.steps import apply, onnx_artifact
from compressors.base import Artifact, Dataset
from compressors.measure.evaluate import EvaluationSettings, evaluate

RESULTS = REPO_ROOT / "bench" / "results" / "distillation.json"
MODEL_CACHE = REPO_ROOT / ".pareto" / "examples"
PACKAGES = ("onnx", "onnxruntime", "torch", "transformers", "onnx2torch", "torch-pruning")
DIGITS_SEEDS = (0, 1, 2, 3, 4)
# The same student, initialisation, seed and epochs; only the loss differs. No held-out
# selection (holdout 0): every run ends at its last epoch.
DIGITS_STUDENT = {
    "width": 0.35,
    "init": "random",
    "epochs": 40,
    "lr": 3e-3,
    "holdout_fraction": 0.0,
}
# (training dataset, loss) per run. "all labels": every training image labeled, for both.
# "20% labels": labels-only sees the labeled fifth; KD sees every image unlabeled (the
# teacher labels them: a transfer set), which is what distillation adds.
LABELED_FRACTION = 0.2
DIGITS_RUNS = {
    "all_labels/labels_only": ("labeled", {"alpha": 0.0}),
    "all_labels/kd": ("labeled", {"temperature": 2.0, "alpha": 0.5}),
    "20pct_labels/labels_only": ("fifth", {"alpha": 0.0}),
    "20pct_labels/kd_transfer_set": ("unlabeled", {"temperature": 2.0}),
}
DIGITS_QAT = {"epochs": 3, "lr": 1e-4}
DIGITS_GRADUAL = {"final_sparsity": 0.8, "epochs": 10, "frequency": 10}


def digits(work: Path, settings: EvaluationSettings, log: Any, threads: int = 1) -> dict[str, Any]:
    from examples.models import build_digits_cnn, digits_split, onnx_accuracy

    teacher = onnx_artifact(build_digits_cnn(MODEL_CACHE / "digits_cnn.onnx").path)
    x_train, x_test, y_train, y_test = digits_split(0)
    train = Dataset("digits-train", {"pixels": x_train}, y_train)
    k = round(LABELED_FRACTION * len(y_train))
    data = {
        "labeled": train,
        "fifth": Dataset("digits-train-fifth", {"pixels": x_train[:k]}, y_train[:k]),
        "unlabeled": Dataset("digits-train-unlabeled", {"pixels": x_train}),
    }
    test = Dataset("digits-test", {"pixels": x_test}, y_test)
    calib = Dataset("digits-calib", {"pixels": x_train[:256]})
    accuracy: dict[str, list[float]] = {name: [] for name in DIGITS_RUNS}
    students: dict[str, Artifact] = {}
    params_ratio = 0.0
    for seed in DIGITS_SEEDS:
        for name, (dataset, loss) in DIGITS_RUNS.items():
            out, report, _ = apply(
                "distill.knowledge",
                teacher,
                DIGITS_STUDENT | loss,
                {"training": data[dataset]},
                work / f"{name.replace('/', '-')}-{seed}",
                threads,
                seed=seed,
            )
            accuracy[name].append(onnx_accuracy(out.path, x_test, y_test))
            students.setdefault(name, out)
            params_ratio = report["params_ratio"]
        log(f"digits seed {seed}: " + ", ".join(f"{k} {v[-1]:.4f}" for k, v in accuracy.items()))
    qat, qat_report, _ = apply(
        "quantize.qat",
        teacher,
        DIGITS_QAT,
        {"training": train, "calibration": calib, "evaluation": test},
        work / "qat",
        threads,
    )
    log(f"digits QAT: {qat_report['accuracy']}")
    gradual, gradual_report, _ = apply(
        "prune.gradual",
        teacher,
        DIGITS_GRADUAL,
        {"training": train},
        work / "gradual",
        threads,
    )
    variants = [students["all_labels/labels_only"], students["all_labels/kd"], qat, gradual]
    parent_m, measured = evaluate(teacher, variants, test, settings)
    names = ["student_labels_only", "student_kd", "qat_int8", "gradual_80"]
    return {
        "teacher_accuracy": parent_m["quality"]["accuracy"],
        "student_params_ratio": params_ratio,
        "student_config": DIGITS_STUDENT,
        "runs": {k: {"training": d, "loss": loss} for k, (d, loss) in DIGITS_RUNS.items()},
        "labeled_fraction": LABELED_FRACTION,
        "seeds": list(DIGITS_SEEDS),
        "student_accuracy": {
            k: {"per_seed": v, "mean": float(np.mean(v))} for k, v in accuracy.items()
        },
        "qat": qat_report["accuracy"],
        "gradual": {k: gradual_report[k] for k in ("achieved_sparsity", "target_sparsity")},
        "variants": {n: ratios(parent_m, m, 64) for n, m in zip(names, measured, strict=True)},
        "measurements": {"teacher": parent_m, **dict(zip(names, measured, strict=True))},
    }


def targets(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The issue's targets, each with the measured value and whether it is met."""
    out: dict[str, dict[str, Any]] = {}
    if "minilm" in results:
        s = results["minilm"]["student"]
        out["minilm student speedup b1 s32 >= 1.8"] = _target(s["speedup"], s["speedup"] >= 1.8)
        out["minilm student mean cosine >= 0.95"] = _target(
            s["cosine_mean"], s["cosine_mean"] >= 0.95
        )
    if "digits" in results:
        d = results["digits"]
        acc = d["student_accuracy"]
        out["digits student params <= 1/4"] = _target(
            d["student_params_ratio"], d["student_params_ratio"] <= 0.25
        )
        for setting, kd in (("all_labels", "kd"), ("20pct_labels", "kd_transfer_set")):
            gain = acc[f"{setting}/{kd}"]["mean"] - acc[f"{setting}/labels_only"]["mean"]
            out[f"digits KD beats labels-only, {setting} (mean of seeds)"] = _target(gain, gain > 0)
        q = d["qat"]
        out["digits QAT int8 >= PTQ int8"] = _target(q["gain"], q["qat_int8"] >= q["ptq_int8"])
    return out


def _target(value: float, met: bool) -> dict[str, Any]:
    return {"value": round(float(value), 4), "met": bool(met)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (latency)")
    parser.add_argument("--train-threads", type=int, default=2, help="torch threads (training)")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--only", choices=("minilm", "digits"))
    args = parser.parse_args(argv)
    settings = EvaluationSettings(
        batch_sizes=(1, 64), iterations=args.iterations, threads=args.threads, measure_memory=False
    )
    results = _earlier_results() if args.only else {}  # --only: update that part
    with tempfile.TemporaryDirectory(prefix="pareto-bench-distill-") as scratch:
        from bench.distillation_minilm import minilm

        for name, run in (("digits", digits), ("minilm", minilm)):
            if args.only in (None, name):
                log = lambda m: print(m, flush=True)  # noqa: E731
                results[name] = run(Path(scratch) / name, settings, log, args.train_threads)
    results["targets"] = targets(results)
    results["settings"] = {
        "threads": args.threads,
        "train_threads": args.train_threads,
        "iterations": args.iterations,
    }
    for name, target in results["targets"].items():
        print(f"{'met   ' if target['met'] else 'MISSED'} {name}: {target['value']}")
    payload = {"machine": machine_info(), "packages": package_versions(PACKAGES), **results}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    print(f"wrote {RESULTS}")
    return 0


def _earlier_results() -> dict[str, Any]:
    try:
        earlier = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in earlier.items() if k in ("digits", "minilm")}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


if __name__ == "__main__":
    raise SystemExit(main())
