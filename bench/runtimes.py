"""Runtimes side by side: the same model on onnxruntime_cpu, edgetpu_tflite and
triton_remote, in one run (`python -m bench.runtimes`, part of `make bench`).

* digits CNN (ONNX) on all three; MiniLM (ONNX for ORT and the remote, the same weights as
  a .pt2 for the LiteRT converter, which cannot take MiniLM's ONNX graph).
* edgetpu_tflite: int8 .tflite calibrated on 200 (digits) / 100 (MiniLM) samples, run on
  the CPU interpreter with 1 thread; its device is "cpu-fallback" (no EdgeTPU here), so
  its latency is NOT an EdgeTPU figure. Build time (cold) and a cached prepare (hit).
* triton_remote: a second Pareto gateway process (KServe v2 gRPC, ORT 1 thread) through
  tritonclient: its latency includes the gRPC round trip.
* tensorrt_gpu: listed with the reason it cannot run here.
Latency: requests interleaved one by one across runtimes (bench/common.run_interleaved).
Quality: digits accuracy on the held-out split; MiniLM cosine to ORT fp32 on 32 sentences.
Results: a table on stdout and bench/results/runtimes.json.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    REPO_ROOT,
    GatewayProcess,
    machine_info,
    package_versions,
    run_interleaved,
    summarize,
)

RESULTS = REPO_ROOT / "bench" / "results" / "runtimes.json"
MODEL_CACHE = REPO_ROOT / ".pareto" / "examples"
SECONDS = 4.0


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cases(work: Path) -> list[dict[str, Any]]:
    from examples.models import (
        build_digits_cnn,
        digits_split,
        export_minilm,
        export_minilm_student,
        tokenize,
    )
    from examples.text import english_sentences

    digits = build_digits_cnn(MODEL_CACHE / "digits_cnn.onnx")
    x_train, x_test, _, y_test = digits_split()
    np.savez(work / "digits-calib.npz", pixels=x_train[:200])
    minilm = export_minilm(MODEL_CACHE / "minilm.onnx")
    minilm_pt2 = export_minilm_student(MODEL_CACHE / "minilm-6.pt2", layers=6)
    np.savez(work / "minilm-calib.npz", **tokenize(english_sentences(100, seed=1), 32))
    text = tokenize(english_sentences(32, seed=2), 32)
    return [
        {
            "name": "digits",
            "onnx": digits.path,
            "int8_source": digits.path,
            "calibration": work / "digits-calib.npz",
            "samples": 200,
            "eval": {"pixels": x_test},
            "labels": y_test,
            "batches": {"b1": {"pixels": x_test[:1]}, "b64": {"pixels": x_test[:64]}},
        },
        {
            "name": "minilm",
            "onnx": minilm.path,
            "int8_source": minilm_pt2.path,
            "calibration": work / "minilm-calib.npz",
            "samples": 100,
            "eval": text,
            "labels": None,
            "batches": {"b1 s32": {k: v[:1] for k, v in text.items()}},
        },
    ]


def _sessions(case: dict[str, Any], remote: str, work: Path, report: dict) -> dict[str, Any]:
    from runtimes.artifacts import ArtifactCache
    from runtimes.registry import get_runtime

    sessions = {"onnxruntime_cpu": get_runtime("onnxruntime_cpu").load(case["onnx"], _ORT)}
    sessions["triton_remote"] = get_runtime("triton_remote").load(
        case["onnx"], {"url": remote, "model_name": case["name"]}
    )
    edgetpu = get_runtime("edgetpu_tflite")
    cache = ArtifactCache(work / "artifacts")
    options = {"calibration": case["calibration"], "calibration_samples": case["samples"]}
    sha = _sha(case["int8_source"])
    try:
        started = time.perf_counter()
        path = cache.prepare(edgetpu, sha, case["int8_source"], options)
        build_s = time.perf_counter() - started
        started = time.perf_counter()
        cache.prepare(edgetpu, sha, case["int8_source"], options)
        report["edgetpu_tflite"] = {
            "build_s": build_s,
            "cached_prepare_s": time.perf_counter() - started,
            "device": edgetpu.describe().device,
            "float_ops": sorted(
                set(json.loads((path.parent / "convert.json").read_text())["float_ops"])
            ),
        }
        sessions["edgetpu_tflite"] = edgetpu.load(path, {"threads": 1})
    except Exception as exc:  # recorded, the other runtimes still run
        report["edgetpu_tflite"] = {"error": str(exc)[:500]}
    return sessions


_ORT = {"intra_op_threads": 1, "inter_op_threads": 1}


def _first_output(session: Any, inputs: dict[str, np.ndarray]) -> np.ndarray:
    return next(iter(session.run(inputs).values()))


def _quality(case: dict[str, Any], sessions: dict[str, Any]) -> dict[str, dict[str, float]]:
    outputs = {name: _first_output(s, case["eval"]) for name, s in sessions.items()}
    reference = outputs["onnxruntime_cpu"]
    quality = {}
    for name, out in outputs.items():
        if case["labels"] is not None:
            quality[name] = {"accuracy": float((out.argmax(1) == case["labels"]).mean())}
        else:
            a, b = out.astype(np.float64), reference.astype(np.float64)
            cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            quality[name] = {
                "cosine_mean_vs_ort": float(cos.mean()),
                "cosine_min": float(cos.min()),
            }
    return quality


def _latency(case: dict[str, Any], sessions: dict[str, Any]) -> dict[str, dict[str, Any]]:
    table = {}
    for label, inputs in case["batches"].items():
        calls = {name: (lambda s=s, x=inputs: s.run(x)) for name, s in sessions.items()}
        for call in calls.values():
            call()  # warm-up
        rounds = run_interleaved(calls, SECONDS)
        stats = {name: summarize([r]) for name, r in rounds.items()}
        base = stats["onnxruntime_cpu"]["p50_ms"]
        for s in stats.values():
            s["p50_x_ort"] = s["p50_ms"] / base
        table[label] = stats
    return table


def main() -> None:
    from runtimes.registry import get_runtime

    work = Path(tempfile.mkdtemp(prefix="bench-runtimes-"))
    cases = _cases(work)
    remote = GatewayProcess(
        work / "remote",
        work / "remote.log",
        env={"PARETO_ORT_INTRA_OP_THREADS": "1", "PARETO_MEASURE_MEMORY": "false"},
    )
    remote.start()
    results: dict[str, Any] = {
        "machine": machine_info(),
        "packages": package_versions(["onnxruntime", "ai-edge-litert", "tritonclient"]),
        "tensorrt_gpu": get_runtime("tensorrt_gpu").available() or "available",
        "models": {},
    }
    try:
        from pareto_cli.client import ParetoClient

        with ParetoClient(remote.address) as client:
            for case in cases:
                client.upload(case["onnx"], case["name"])
        for case in cases:
            entry: dict[str, Any] = {}
            sessions = _sessions(case, remote.address, work, entry)
            entry["quality"] = _quality(case, sessions)
            entry["latency"] = _latency(case, sessions)
            results["models"][case["name"]] = entry
            for session in sessions.values():
                session.close()
    finally:
        remote.stop()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=str))
    _print(results)


def _print(results: dict[str, Any]) -> None:
    print(f"tensorrt_gpu: {results['tensorrt_gpu']}")
    for model, entry in results["models"].items():
        print(f"\n{model}: edgetpu_tflite {entry.get('edgetpu_tflite')}")
        for name, q in entry["quality"].items():
            print(f"  quality {name:16s} {q}")
        for label, stats in entry["latency"].items():
            for name, s in stats.items():
                print(
                    f"  {label:7s} {name:16s} p50 {s['p50_ms']:.3f} ms ({s['p50_x_ort']:.2f}x ort)"
                )
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
