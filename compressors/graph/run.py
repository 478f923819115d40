"""Running ONNX models on dataset arrays: feeds matched to a model's inputs, batch-wise
outputs with ONNX Runtime, and the quality map the job's evaluation reports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pareto_core.errors import FailedPrecondition
from pareto_core.tensors import Signature


def feeds_for(
    signature: Signature, inputs: dict[str, np.ndarray], limit: int, what: str
) -> dict[str, np.ndarray]:
    """The first `limit` samples of `inputs` for each model input, by name (or by position
    when no name matches and the counts agree), cast to the input's dtype."""
    arrays = list(inputs.values())
    feeds = {}
    for k, spec in enumerate(signature.inputs):
        array = inputs.get(spec.name)
        if array is None and len(arrays) == len(signature.inputs):
            array = arrays[k]
        if array is None:
            raise FailedPrecondition(
                f"model input {spec.name!r} is not in the {what} dataset, which has {list(inputs)}"
            )
        feeds[spec.name] = np.ascontiguousarray(array[:limit], dtype=spec.numpy_dtype)
    return feeds


def batches(feeds: dict[str, np.ndarray], batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    total = len(next(iter(feeds.values())))
    for start in range(0, total, batch_size):
        yield {name: array[start : start + batch_size] for name, array in feeds.items()}


def outputs_of(
    path: Path, feeds: dict[str, np.ndarray], output: str, threads: int, batch_size: int
) -> np.ndarray:
    """Output `output` of the model at `path` on `feeds`, run `batch_size` samples at a time
    with ONNX Runtime (CPU, `threads` intra-op threads)."""
    from runtimes.onnxruntime_cpu import OnnxRuntimeCpu

    session = OnnxRuntimeCpu().load(
        Path(path), {"intra_op_threads": threads, "inter_op_threads": 1}
    )
    try:
        parts = [session.run(chunk, [output])[output] for chunk in batches(feeds, batch_size)]
    finally:
        session.close()
    return np.concatenate(parts)


def score(
    outputs: np.ndarray,
    reference: np.ndarray,
    labels: np.ndarray | None,
    mask: np.ndarray | None = None,
) -> dict[str, float]:
    """The quality map of `compressors.measure.quality` (accuracy/loss with labels, cosines,
    top1_agreement, max_abs_error; token-level outputs compared where `mask` is set)."""
    from compressors.measure.quality import quality_metrics

    return quality_metrics(outputs, reference, labels, mask)
