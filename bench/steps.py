"""Running one technique outside a job (the distillation benches): a step and its context."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from compressors import registry
from compressors.base import Artifact, Dataset, StepContext


def apply(
    name: str,
    artifact: Artifact,
    config: dict[str, Any],
    datasets: dict[str, Dataset],
    work: Path,
    threads: int,
    models: dict[str, Artifact] | None = None,
    seed: int = 0,
) -> tuple[Artifact, dict[str, Any], float]:
    technique = registry.get(name)
    work.mkdir(parents=True, exist_ok=True)
    ctx = StepContext(
        work_dir=work,
        parent=artifact,
        datasets=datasets,
        threads=threads,
        models=(models or {}).__getitem__,
        seed=seed,
    )
    started = time.monotonic()
    result = technique.apply(artifact, registry.parse_config(name, config), ctx)
    return result.artifact, result.report, time.monotonic() - started


def onnx_artifact(path: Path) -> Artifact:
    from compressors.graph.files import artifact_for

    return artifact_for(path)
