"""What every job worker loads first: the parent model as an artifact, the job's datasets,
and the evaluation settings (shared by compression jobs and searches)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from compressors.base import Artifact, Dataset, TorchSource
from pareto_core.formats import FORMAT_ONNX_BUNDLE, artifact_format
from service.jobs.variant_store import evaluation_settings, file_sha256
from service.settings import Settings
from service.store.blobs import BlobStore
from service.store.bundles import find_onnx
from service.store.interfaces import Repository
from service.store.records import JobRecord, ModelRecord

if TYPE_CHECKING:
    from compressors.measure.evaluate import EvaluationSettings


def parent_artifact(blobs: BlobStore, model: ModelRecord) -> Artifact:
    """The uploaded model as the first step's input (a bundle's .onnx, beside its data;
    with its torch source when it was uploaded as a Hugging Face folder)."""
    if model.format == FORMAT_ONNX_BUNDLE:
        path = find_onnx(_unpacked_dir(blobs, model.sha256))
    else:
        path = blobs.path(model.sha256)
    source = None
    if model.source is not None:  # the stored folder (a tar), unpacked once and kept
        source = TorchSource(_unpacked_dir(blobs, model.source.sha256), model.source.task)
    return Artifact(path, artifact_format(model.format), model.signature, source)


def load_job_inputs(
    repo: Repository, blobs: BlobStore, job: JobRecord
) -> tuple[Artifact, dict[str, Dataset], str]:
    """(the parent artifact, the job's datasets by role, the parent's sha256)."""
    from service.catalog.datasets import load_dataset

    model = repo.get_model(job.model, job.model_version)
    datasets = {
        role: load_dataset(blobs, repo.get_dataset(name)) for role, name in job.datasets.items()
    }
    return parent_artifact(blobs, model), datasets, model.sha256


def job_evaluation_settings(
    repo: Repository,
    blobs: BlobStore,
    job: JobRecord,
    settings: Settings,
    parent: tuple[Artifact, str],
    is_cancelled: Callable[[], bool],
    measure_memory: bool | None = None,
) -> EvaluationSettings:
    """The job's evaluation settings. A runtime that builds what it runs (e.g. an int8
    .tflite) goes through the server's artifact cache, calibrated on the job's own
    calibration dataset. `parent`: (its artifact, its sha256)."""
    from service.serving.prepare import RuntimePreparer

    name = job.datasets.get("calibration")
    calibration = None
    if name:
        calibration = (name, blobs.path(repo.get_dataset(name).sha256))
    parent_artifact_, parent_sha256 = parent

    def sha256(artifact: Artifact) -> str:
        same = Path(artifact.path) == Path(parent_artifact_.path)
        return parent_sha256 if same else file_sha256(Path(artifact.path))

    preparer = RuntimePreparer(blobs.root, settings.runtime_defaults(), None)
    prepare = preparer.for_job(calibration, sha256)
    memory = settings.measure_memory if measure_memory is None else measure_memory
    threads = settings.job_threads
    return evaluation_settings(job.evaluation, threads, memory, prepare, is_cancelled)


def _unpacked_dir(blobs: BlobStore, sha256: str) -> Path:
    """The server may extract the same bundle at the same moment: the loser retries."""
    try:
        return blobs.unpacked_dir(sha256)
    except OSError:
        return blobs.unpacked_dir(sha256)
