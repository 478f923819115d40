"""Measuring what a job produced and storing it as variants (blob first, record second).

A variant is stored like an upload: the file is checked to be a self-contained, servable
ONNX model (its real signature read from it), copied into staging while hashed, committed
to the blob store and only then recorded, so a crash in between leaves an orphan blob that
the next start-up collects, never a record without its file.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressors.base import EVALUATION_ROLES, Artifact, Dataset, ProgressFn
from pareto_core.errors import Internal, ParetoError
from pareto_core.formats import FORMAT_ONNX
from service.store.blobs import BlobStore
from service.store.interfaces import Repository
from service.store.records import JobRecord, RecipeSpec, VariantRecord

if TYPE_CHECKING:
    from compressors.measure.evaluate import EvaluationSettings, Preparer


@dataclass(frozen=True)
class Produced:
    """What one recipe produced: its final artifact and the report of each step."""

    recipe: RecipeSpec
    artifact: Artifact
    reports: list[dict[str, Any]]


def new_variant_id() -> str:
    return "var-" + secrets.token_hex(5)


def evaluation_settings(
    evaluation: dict[str, Any],
    threads: int,
    measure_memory: bool,
    prepare: Preparer,
    is_cancelled: Callable[[], bool],
) -> EvaluationSettings:
    """The job's evaluation settings; `prepare` builds what a runtime with a build step
    runs (service.serving.prepare.job_preparer)."""
    from compressors.measure.evaluate import EvaluationSettings

    return EvaluationSettings(
        batch_sizes=tuple(evaluation["batch_sizes"]),
        iterations=int(evaluation["iterations"]),
        runtime=evaluation["runtime"],
        threads=threads,
        measure_memory=measure_memory,
        prepare=prepare,
        is_cancelled=is_cancelled,
    )


def measure(
    parent: Artifact,
    produced: list[Produced],
    datasets: dict[str, Dataset],
    settings: EvaluationSettings,
    progress: ProgressFn,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The parent's and every variant's Measurement, taken in one run."""
    from compressors.measure.evaluate import evaluate

    dataset = next((datasets[r] for r in EVALUATION_ROLES if r in datasets), None)
    return evaluate(parent, [p.artifact for p in produced], dataset, settings, progress)


def store_variant(
    repo: Repository,
    blobs: BlobStore,
    job: JobRecord,
    produced: Produced,
    metrics: tuple[dict[str, Any], dict[str, Any]],
    budget: tuple[bool, str],
) -> VariantRecord:
    """Commit the variant's file and record. `metrics` = (variant's, parent's) Measurement,
    `budget` = (ok, reason) from check_budget."""
    from service.catalog.model_inspect import inspect_model

    try:
        signature = inspect_model(produced.artifact.path, FORMAT_ONNX, Path(), 0)
    except ParetoError as exc:
        raise Internal(f"the result is not a servable ONNX file: {exc}") from exc
    staging = blobs.new_staging_path()
    sha256, size = copy_hashing(produced.artifact.path, staging)
    ok, reason = budget
    record = VariantRecord(
        id=new_variant_id(),
        parent_model=job.model,
        parent_version=job.model_version,
        job_id=job.id,
        recipe=produced.recipe,
        format=FORMAT_ONNX,
        sha256=sha256,
        size_bytes=size,
        signature=signature,
        metrics=metrics[0],
        parent_metrics=metrics[1],
        budget_ok=ok,
        budget_reason="" if ok else reason,
        report={"steps": produced.reports},
    )
    with blobs.lock:
        blobs.commit(staging, sha256)
        return repo.add_variant(record)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def copy_hashing(source: Path, dest: Path) -> tuple[str, int]:
    """Copy `source` to `dest` (a fresh staging path); returns its sha256 and size.

    A copy, not a move: a technique may hand back its input (even the parent's blob)."""
    digest = hashlib.sha256()
    size = 0
    with open(source, "rb") as src, open(dest, "xb") as out:
        while block := src.read(1024 * 1024):
            digest.update(block)
            out.write(block)
            size += len(block)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest(), size
