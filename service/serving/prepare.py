"""The prepare step of serving: complete a runtime's options, then build (or reuse) what it
loads. Called by `SessionManager._load` just before `runtime.load`.

* Options: the server's per-runtime defaults (`PARETO_RUNTIME_OPTIONS`, a JSON object
  keyed by runtime name) under the options the caller gave. `triton_remote` gets the
  served name as its `model_name` unless one is given. `edgetpu_tflite` gets its
  `calibration_dataset` (a stored dataset's name) resolved to the dataset's file; a
  filesystem path (`calibration`) is never taken from a caller.
* Artifacts: `runtimes.artifacts.ArtifactCache` under `<data dir>/artifacts`, one cache
  object per directory so concurrent loads of one model build once.
* Jobs: `job_preparer` gives a job's evaluation (compressors/evaluate.py) the same build
  and cache, calibrated on the job's own calibration dataset only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compressors.base import Artifact
from pareto_core.errors import FailedPrecondition, InvalidArgument
from runtimes.artifacts import ArtifactCache
from runtimes.base import Runtime
from service import metrics
from service.serving.servables import Servable

DatasetPath = Callable[[str], Path]
# (runtime, model, options) -> (what `runtime.load` takes, the completed options)
JobPreparer = Callable[[Runtime, Artifact, dict[str, Any]], tuple[Path, dict[str, Any]]]
CALIBRATED_RUNTIMES = frozenset({"edgetpu_tflite"})  # their build needs a dataset

_lock = threading.Lock()
_caches: dict[Path, ArtifactCache] = {}
_config: dict[str, Any] = {"defaults": {}, "dataset_path": None}


def configure(defaults: dict[str, dict[str, Any]], dataset_path: DatasetPath | None) -> None:
    """Set by the server at start: per-runtime default options and the dataset lookup."""
    _config.update(defaults=dict(defaults), dataset_path=dataset_path)


def artifact_cache(root: Path) -> ArtifactCache:
    with _lock:
        cache = _caches.get(Path(root))
        if cache is None:
            cache = _caches[Path(root)] = ArtifactCache(root)
        return cache


def complete_options(
    runtime: Runtime, servable: Servable, options: dict[str, Any] | None
) -> dict[str, Any]:
    given = dict(options or {})
    if "calibration" in given:
        raise InvalidArgument(
            f"{runtime.name} option 'calibration' is set by the server; name a stored "
            "dataset with calibration_dataset instead"
        )
    merged = {**_config["defaults"].get(runtime.name, {}), **given}
    if runtime.name == "triton_remote" and not merged.get("model_name"):
        merged["model_name"] = (
            f"{servable.model}.{servable.version}" if servable.is_variant else servable.model
        )
    dataset = merged.get("calibration_dataset")
    if runtime.name == "edgetpu_tflite" and dataset:
        lookup = _config["dataset_path"]
        if lookup is None:
            raise FailedPrecondition("this server cannot resolve calibration datasets")
        merged["calibration"] = str(lookup(str(dataset)))
    return merged


def prepare(
    runtime: Runtime,
    servable: Servable,
    model_path: Path,
    options: dict[str, Any] | None,
    data_dir: Path,
) -> tuple[Path, dict[str, Any]]:
    """(what `runtime.load` takes, the completed options)."""
    completed = complete_options(runtime, servable, options)
    cache = artifact_cache(Path(data_dir) / "artifacts")
    artifact = cache.prepare(runtime, servable.sha256, model_path, completed)
    described = runtime.describe()
    accelerated = "true" if described.accelerated else "false"
    metrics.RUNTIME_INFO.labels(runtime.name, described.device, described.version, accelerated).set(
        1
    )
    return artifact, completed


def job_preparer(
    data_dir: Path,
    defaults: dict[str, dict[str, Any]],
    calibration: tuple[str, Path] | None,
    model_sha256: Callable[[Artifact], str],
) -> JobPreparer:
    """What a job's evaluation uses to build or reuse a runtime's artifact for a model
    (an `Artifact`): the server's defaults under the evaluation's options,
    and for a runtime that calibrates, the job's own calibration dataset (`calibration`:
    its name and stored file) and nothing else. The cache is the server's, keyed by
    `model_sha256(artifact)`: a stored variant later served there is a cache hit."""

    def prepare_model(
        runtime: Runtime, artifact: Artifact, options: dict[str, Any]
    ) -> tuple[Path, dict[str, Any]]:
        merged = {**defaults.get(runtime.name, {}), **options}
        if runtime.name in CALIBRATED_RUNTIMES:
            if calibration is None:
                raise FailedPrecondition(
                    f"evaluation on {runtime.name} quantizes the models on a representative "
                    "dataset: give the job a calibration dataset (datasets.calibration)"
                )
            merged["calibration_dataset"], merged["calibration"] = (
                calibration[0],
                str(calibration[1]),
            )
        cache = artifact_cache(Path(data_dir) / "artifacts")
        return cache.prepare(runtime, model_sha256(artifact), Path(artifact.path), merged), merged

    return prepare_model
