"""The prepare step of a runtime, for serving and for jobs: complete its options, then
build (or reuse) what it loads.

Options are put together by `Runtime.resolve_options` (the process's defaults for the
runtime, under the caller's options, then what the runtime fills in itself); artifacts
come from one `runtimes.artifacts.ArtifactCache` under `<data dir>/artifacts`, so
concurrent loads of one model build once and a variant a job measured is a cache hit when
it is served.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from compressors.base import Artifact
from compressors.measure.evaluate import Preparer
from pareto_core.errors import FailedPrecondition
from pareto_core.tensors import Signature
from runtimes.artifacts import ArtifactCache
from runtimes.base import Runtime
from runtimes.options import DatasetLookup, OptionContext, Options
from service import metrics

RuntimeDefaults = Mapping[str, Mapping[str, Any]]


class RuntimePreparer:
    """Options and artifacts of every runtime load of one process."""

    def __init__(
        self, data_dir: Path, defaults: RuntimeDefaults, find_dataset: DatasetLookup | None
    ) -> None:
        self.cache = ArtifactCache(Path(data_dir) / "artifacts", metrics.ARTIFACT_CACHE_EVENTS)
        self._defaults = defaults
        self._find_dataset = find_dataset

    def prepare(
        self,
        runtime: Runtime,
        model_sha256: str,
        model_path: Path,
        given: Mapping[str, Any] | None,
        served_name: str = "",
        signature: Signature | None = None,
    ) -> tuple[Path, Options]:
        """(what `runtime.load` takes, the options it loads with) for serving a model
        (sha256 `model_sha256`, `signature`) under `served_name`."""
        context = OptionContext(
            served_name=served_name,
            find_dataset=self._find_dataset,
            model_sha256=model_sha256,
            signature=signature,
        )
        return self._build(runtime, model_sha256, model_path, given, context)

    def _build(
        self,
        runtime: Runtime,
        model_sha256: str,
        model_path: Path,
        given: Mapping[str, Any] | None,
        context: OptionContext,
    ) -> tuple[Path, Options]:
        options = runtime.resolve_options(self._defaults.get(runtime.name, {}), given, context)
        return self.cache.prepare(runtime, model_sha256, model_path, options), options

    def for_job(
        self, calibration: tuple[str, Path] | None, model_sha256: Callable[[Artifact], str]
    ) -> Preparer:
        """What a job's evaluation (`compressors.measure.evaluate`) uses to build or reuse a
        runtime's artifact for a model: a runtime that calibrates gets the job's own
        calibration dataset (`calibration`: its name and stored file) and nothing else."""
        name, path = calibration or ("", Path())
        context = OptionContext(
            find_dataset=(lambda _: path) if calibration else None, calibration_dataset=name
        )

        def prepare(
            runtime: Runtime, artifact: Artifact, options: dict[str, Any]
        ) -> tuple[Path, Options]:
            if runtime.needs_calibration and calibration is None:
                raise FailedPrecondition(
                    f"evaluation on {runtime.name} quantizes the models on a representative "
                    "dataset: give the job a calibration dataset (datasets.calibration)"
                )
            sha256 = model_sha256(artifact)
            return self._build(runtime, sha256, Path(artifact.path), options, context)

        return prepare


def publish_runtime(runtime: Runtime) -> None:
    """`pareto_runtime_info` for a runtime that loaded a model: what it really runs on."""
    described = runtime.describe()
    accelerated = "true" if described.accelerated else "false"
    metrics.RUNTIME_INFO.labels(runtime.name, described.device, described.version, accelerated).set(
        1
    )
