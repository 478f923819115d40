"""Measures a parent model and its variants in one run, so every ratio is honest.

`evaluate(parent, variants, dataset, settings)` returns one `pareto.v1.Measurement` dict per
model (the parent's first). Every model is measured the same way, in the same process and
the same minutes:

* file: `size_bytes` (with external data), `compressed_size_bytes` (gzip -9, what weight
  sharing and sparsity save on the wire), `parameters` and `sparsity` (see model_stats);
* `quality`: the models run on the same inputs (the dataset's first `max_eval_samples`
  samples); accuracy/loss against labels when there are labels and the outputs are class
  scores, and fidelity to the parent's outputs (the parent against itself scores cosine 1,
  agreement 1, error 0). Figures use each model's first output (or the one named like the
  parent's first output). A token-level output is compared on the real tokens of the
  inputs' attention mask, and as mask-pooled sentence embeddings (see `quality`);
* `latency` per batch size: the dataset's first `batch` samples (repeated when it has
  fewer), `warmup` untimed runs, then `iterations` rounds in which every model runs once,
  the order rotating each round, so the machine's drift hits every model alike;
* `memory_bytes`: peak resident memory over the baseline of a fresh child process that
  loads the model and runs it once (`runtimes.memory_probe`), i.e. VmHWM - VmRSS-after-import.

Models run on `settings.runtime` (the runtime they will be served on) with
`settings.threads` threads (ONNX Runtime: intra-op, and one inter-op thread). A runtime
with a build step (`Runtime.needs_build`, e.g. edgetpu_tflite's int8 .tflite) runs what
`settings.prepare` builds or reuses from the artifact cache (a job's worker passes
`service.serving.prepare.job_preparer`, which calibrates on the job's own dataset). A
torch.export parent the runtime cannot load runs in torch eager mode instead and gets no
memory figure (0). Each Measurement says which `runtime` and `device` measured it.

Without a dataset, inputs are synthetic and seeded (see eval_inputs); quality is then only
fidelity to the parent on those samples.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compressors.base import Artifact, Dataset, ProgressFn
from compressors.measure.inputs import fixed_batch, inputs_for, rows, source_inputs
from compressors.measure.model_stats import file_stats
from compressors.measure.quality import QualityAccumulator, batched_outputs
from compressors.measure.tokens import token_mask
from pareto_core.errors import Cancelled, FailedPrecondition, InvalidArgument, ParetoError
from pareto_core.tensors import Signature
from runtimes.base import Runtime, Session

QUALITY_BATCH = 64

# (runtime, model, options) -> (what `runtime.load` takes, the completed options).
Preparer = Callable[[Runtime, Artifact, dict[str, Any]], tuple[Path, dict[str, Any]]]


@dataclass(frozen=True)
class EvaluationSettings:
    batch_sizes: tuple[int, ...] = (1,)
    iterations: int = 50
    warmup: int = 5
    runtime: str = "onnxruntime_cpu"
    threads: int = 1
    measure_memory: bool = True
    max_eval_samples: int = 1000
    # Builds (or reuses) what a runtime with a build step loads; None: such runtimes are
    # refused (FAILED_PRECONDITION).
    prepare: Preparer | None = field(default=None, compare=False, repr=False)
    # Checked between batches, timed runs and memory probes: Cancelled when it says so.
    is_cancelled: Callable[[], bool] = field(default=lambda: False, compare=False, repr=False)

    def check_cancelled(self) -> None:
        if self.is_cancelled():
            raise Cancelled("measuring cancelled")

    def __post_init__(self) -> None:
        checks = {
            "batch_sizes": (
                bool(self.batch_sizes) and min(self.batch_sizes) >= 1,
                "one or more sizes, each >= 1",
            ),
            "iterations": (self.iterations >= 1, ">= 1"),
            "warmup": (self.warmup >= 0, ">= 0"),
            "threads": (self.threads >= 1, ">= 1"),
            "max_eval_samples": (self.max_eval_samples >= 1, ">= 1"),
        }
        for name, (ok, expected) in checks.items():
            if not ok:
                value = getattr(self, name)
                raise InvalidArgument(f"evaluation.{name}: expected {expected}, got {value!r}")


def _no_progress(fraction: float, message: str, metrics: dict[str, float]) -> None:
    return None


def evaluate(
    parent: Artifact,
    variants: Sequence[Artifact],
    dataset: Dataset | None,
    settings: EvaluationSettings | None = None,
    progress: ProgressFn | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(parent's Measurement, [each variant's Measurement]), all taken in this one run."""
    settings = settings or EvaluationSettings()
    progress = progress or _no_progress
    models = [parent, *variants]
    progress(0.0, f"reading {len(models)} model files", {})
    measurements = [file_stats(a.path, a.format) for a in models]
    sessions: list[Session] = []
    try:
        for artifact, m in zip(models, measurements, strict=True):
            sessions.append(_load_session(artifact, settings))
            m["runtime"], m["device"] = _measured_on(sessions[-1], settings)
        source, labels = source_inputs(sessions[0].signature, dataset, settings.max_eval_samples)
        progress(0.1, "measuring quality on the same inputs", {})
        for m, quality in zip(
            measurements, _quality(sessions, source, labels, settings), strict=True
        ):
            m["quality"] = quality
        progress(0.3, "measuring latency, models interleaved", {})
        latency = _latency(sessions, source, settings)
        for m, entries in zip(measurements, latency, strict=True):
            m["latency"] = entries
    finally:
        for session in sessions:
            session.close()
    progress(0.8, "measuring memory in fresh processes", {})
    for m, artifact in zip(measurements, models, strict=True):
        m["memory_bytes"] = _memory(artifact, settings)
    progress(1.0, "measured", {})
    return measurements[0], measurements[1:]


# --------------------------------------------------------------------------- sessions


def _prepared(
    runtime: Runtime, artifact: Artifact, settings: EvaluationSettings
) -> tuple[Path, dict[str, Any]]:
    """(what `runtime.load` takes, its options): the model itself, or the built artifact."""
    missing = runtime.available()
    if missing is not None:
        raise FailedPrecondition(f"runtime {runtime.name!r} is not available: {missing}")
    options = runtime.thread_options(settings.threads)
    if not runtime.needs_build():
        return Path(artifact.path), options
    if settings.prepare is None:
        raise FailedPrecondition(
            f"runtime {runtime.name!r} builds what it runs; measuring on it needs an "
            "artifact cache (a compression job has one)"
        )
    return settings.prepare(runtime, artifact, options)


def check_measurable(artifact: Artifact, settings: EvaluationSettings) -> None:
    """FailedPrecondition unless `artifact` can be measured on `settings.runtime`. Builds
    (and caches) the runtime's artifact now, so a model that cannot be built fails alone."""
    from pareto_core.formats import FORMAT_TORCH_EXPORT
    from runtimes.registry import get_runtime

    runtime = get_runtime(settings.runtime)
    if artifact.format in runtime.formats:
        _prepared(runtime, artifact, settings)
    elif artifact.format != FORMAT_TORCH_EXPORT:
        raise FailedPrecondition(_cannot_measure(runtime, artifact))


def _cannot_measure(runtime: Runtime, artifact: Artifact) -> str:
    return (
        f"runtime {runtime.name!r} cannot measure {Path(artifact.path).name}: it takes "
        f"{sorted(runtime.formats)} models, this one is {artifact.format!r}"
    )


def _load_session(artifact: Artifact, settings: EvaluationSettings) -> Session:
    from pareto_core.formats import FORMAT_TORCH_EXPORT
    from runtimes.registry import get_runtime

    runtime = get_runtime(settings.runtime)
    if artifact.format in runtime.formats:
        return runtime.load(*_prepared(runtime, artifact, settings))
    if artifact.format == FORMAT_TORCH_EXPORT:
        return ExportedProgramSession(Path(artifact.path), artifact.signature, settings.threads)
    raise FailedPrecondition(_cannot_measure(runtime, artifact))


def _measured_on(session: Session, settings: EvaluationSettings) -> tuple[str, str]:
    """(runtime, device) that ran `session`: the session's own device when it says one."""
    from runtimes.registry import get_runtime

    if isinstance(session, ExportedProgramSession):
        return "torch", "cpu"
    device = getattr(session, "device", "") or get_runtime(settings.runtime).describe().device
    return settings.runtime, str(device)


class ExportedProgramSession(Session):
    """A torch.export archive run in torch eager mode (for a .pt2 parent only)."""

    def __init__(self, path: Path, signature: Signature, threads: int) -> None:
        import torch

        from runtimes.pt2_inspect import load_restricted

        torch.set_num_threads(max(1, threads))
        self._module = load_restricted(path).module()
        self.signature = signature

    def run(
        self, inputs: dict[str, np.ndarray], output_names: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        import torch

        args = [
            torch.from_numpy(np.ascontiguousarray(inputs[t.name])) for t in self.signature.inputs
        ]
        with torch.no_grad():
            result = self._module(*args)
        outs = result if isinstance(result, tuple | list) else (result,)
        names = [t.name for t in self.signature.outputs]
        values = {name: out.detach().numpy() for name, out in zip(names, outs, strict=True)}
        return {name: values[name] for name in (output_names or names)}


# --------------------------------------------------------------------------- quality


def _output_name(session: Session, reference_name: str) -> str:
    names = [t.name for t in session.signature.outputs]
    return reference_name if reference_name in names else names[0]


def _all_outputs(
    session: Session,
    source: dict[str, np.ndarray],
    n: int,
    output: str,
    check_cancelled: Callable[[], None],
) -> np.ndarray:
    batch = fixed_batch(session.signature) or QUALITY_BATCH
    inputs = inputs_for(session.signature, source, n)
    parts = []
    for part in batched_outputs(session, inputs, output, batch):
        check_cancelled()
        parts.append(part)
    return np.concatenate(parts)


def _sample_count(sessions: list[Session], source: dict[str, np.ndarray]) -> int:
    """All source rows, or a multiple of every fixed batch dimension (at least one batch)."""
    n = len(next(iter(source.values())))
    fixed = [b for b in (fixed_batch(s.signature) for s in sessions) if b]
    if not fixed:
        return n
    step = int(np.lcm.reduce(fixed))
    return max(step, n - n % step)


def _quality(
    sessions: list[Session],
    source: dict[str, np.ndarray],
    labels: np.ndarray | None,
    settings: EvaluationSettings,
) -> list[dict[str, float]]:
    """Each model's quality map; fidelity against sessions[0] (the parent) on the same rows."""
    n = _sample_count(sessions, source)
    reference_name = sessions[0].signature.outputs[0].name
    check = settings.check_cancelled
    reference = _all_outputs(sessions[0], source, n, reference_name, check)
    label_rows = None if labels is None else rows(labels, n)
    mask = token_mask(source)
    mask_rows = None if mask is None else rows(mask, n)
    results = []
    for k, session in enumerate(sessions):
        output = _output_name(session, reference_name)
        outputs = reference if k == 0 else _all_outputs(session, source, n, output, check)
        acc = QualityAccumulator()
        for start in range(0, n, QUALITY_BATCH):
            part = slice(start, start + QUALITY_BATCH)
            ref = reference[part]
            out = ref if k == 0 else outputs[part]  # the parent: the very same array
            part_labels = None if label_rows is None else label_rows[part]
            acc.add(out, ref, part_labels, None if mask_rows is None else mask_rows[part])
        results.append(acc.result())
    return results


# --------------------------------------------------------------------------- latency


def _accepts(signature: Signature, batch: int) -> bool:
    return fixed_batch(signature) in (None, batch)


def _stats(batch: int, seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1e3
    return {
        "batch_size": batch,
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "throughput_per_s": float(batch * len(seconds) / sum(seconds)),
    }


def _time_batch(
    sessions: list[Session], source: dict[str, np.ndarray], batch: int, settings: EvaluationSettings
) -> list[list[float]]:
    """Per model, `iterations` timed runs at `batch`, the models interleaved round by round."""
    feeds = [inputs_for(s.signature, source, batch) for s in sessions]
    for session, feed in zip(sessions, feeds, strict=True):
        for _ in range(settings.warmup):
            session.run(feed)
    times: list[list[float]] = [[] for _ in sessions]
    order = list(range(len(sessions)))
    for i in range(settings.iterations):
        for k in order[i % len(order) :] + order[: i % len(order)]:
            settings.check_cancelled()
            start = time.perf_counter()
            sessions[k].run(feeds[k])
            times[k].append(time.perf_counter() - start)
    return times


def _latency(
    sessions: list[Session], source: dict[str, np.ndarray], settings: EvaluationSettings
) -> list[list[dict[str, float]]]:
    """Each model's latency entries, for the batch sizes every model accepts."""
    entries: list[list[dict[str, float]]] = [[] for _ in sessions]
    for batch in sorted(set(settings.batch_sizes)):
        if not all(_accepts(s.signature, batch) for s in sessions):
            continue
        for k, seconds in enumerate(_time_batch(sessions, source, batch, settings)):
            entries[k].append(_stats(batch, seconds))
    return entries


# --------------------------------------------------------------------------- memory


def _memory(artifact: Artifact, settings: EvaluationSettings) -> int:
    """Peak RSS over the baseline of a fresh process serving `artifact`; 0 if not measured."""
    from runtimes.memory_probe import measure_model_memory
    from runtimes.registry import get_runtime

    runtime = get_runtime(settings.runtime)
    if not settings.measure_memory or artifact.format not in runtime.formats:
        return 0
    settings.check_cancelled()
    path, options = _prepared(runtime, artifact, settings)  # a cache hit by now
    try:
        probe = measure_model_memory(settings.runtime, path, options)
    except ParetoError:
        settings.check_cancelled()  # a cancel stops the probe too (its process group)
        raise
    return max(0, probe.peak_rss_bytes - probe.baseline_rss_bytes)
