"""Calibration for quantize.static: a CalibrationDataReader over a job dataset, and the
activation ranges computed with ONNX Runtime's calibrators and saved as ORT's calibration
cache (JSON), which `quantize_static(calibration_cache_path=...)` then reads.

Calibrating here rather than inside `quantize_static` gives two things ORT's one-call path
does not: the histogram size of entropy calibration (ORT's default of 128 bins searches no
threshold below the observed maximum, so "entropy" would equal minmax), and bounded memory
(histogram calibrators hold every intermediate output of one `collect_data` call, so the
data goes in a few batches per call).

Imports `onnxruntime.quantization` at module level: import this module inside `apply` only.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, create_calibrator
from onnxruntime.quantization.calibrate import save_tensors_data

from compressors.graph.run import batches, feeds_for
from pareto_core.errors import Cancelled, FailedPrecondition
from pareto_core.tensors import Signature

METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
BATCHES_PER_COLLECT = 8


class DatasetReader(CalibrationDataReader):
    """Feeds the first `max_samples` samples of a dataset, `batch_size` at a time.

    Arrays are matched to the model's inputs by name (or position) and cast to their dtypes
    up front, so a mismatch fails before calibration starts. `is_cancelled` is polled
    before every batch, so a cancelled job stops in the middle of a long calibration, and
    `progress` gets the fraction of batches read.
    """

    def __init__(
        self,
        signature: Signature,
        inputs: dict[str, np.ndarray],
        max_samples: int,
        batch_size: int,
        is_cancelled: Callable[[], bool] = lambda: False,
        progress: Callable[[float], None] = lambda fraction: None,
    ) -> None:
        self.feeds = feeds_for(signature, inputs, max_samples, "calibration")
        self.batch_size = batch_size
        self.is_cancelled = is_cancelled
        self.progress = progress
        self.batches_read = 0
        self._iter: Iterator[dict[str, np.ndarray]] = batches(self.feeds, batch_size)

    @property
    def num_samples(self) -> int:
        return len(next(iter(self.feeds.values())))

    @property
    def batches_left(self) -> int:
        return -(-self.num_samples // self.batch_size) - self.batches_read

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.is_cancelled():
            raise Cancelled("cancelled during calibration")
        batch = next(self._iter, None)
        if batch is not None:
            self.batches_read += 1
            self.progress(min(1.0, self.batches_read * self.batch_size / self.num_samples))
        return batch


class _Slice(CalibrationDataReader):
    """At most `count` batches of `reader`."""

    def __init__(self, reader: DatasetReader, count: int) -> None:
        self.reader, self.left = reader, count

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.left <= 0:
            return None
        self.left -= 1
        return self.reader.get_next()


def compute_ranges(
    model: Path,
    reader: DatasetReader,
    method: str,
    op_types: list[str],
    options: dict[str, Any],
    cache: Path,
    threads: int,
) -> None:
    """Compute the activation ranges of `model` on `reader`'s data with ORT's `method`
    calibrator (`options`: its num_bins, percentile, ...) on `threads` threads and save
    them to `cache`."""
    with tempfile.TemporaryDirectory(dir=cache.parent) as tmp:
        augmented = Path(tmp) / "augmented.onnx"
        try:
            calibrator = create_calibrator(
                model, op_types, str(augmented), METHODS[method], extra_options=options
            )
            calibrator.infer_session = _session(augmented, threads, calibrator)
            while reader.batches_left > 0:
                calibrator.collect_data(_Slice(reader, BATCHES_PER_COLLECT))
            ranges = calibrator.compute_data()
        except Cancelled:
            raise
        except Exception as exc:  # ORT raises ValueError/RuntimeError/Fail on odd activations
            raise FailedPrecondition(
                f"{method} calibration failed on this model: {exc}"
                + ("" if method == "minmax" else "; method minmax may still work")
            ) from None
    save_tensors_data(ranges, cache)


def _session(path: Path, threads: int, calibrator: Any) -> Any:
    """The calibrator's session again, on the job's threads: ORT's own uses every core."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    return ort.InferenceSession(
        str(path), sess_options=options, providers=calibrator.execution_providers
    )
