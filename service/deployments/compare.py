"""How far two answers to the same request agree: top-1, cosine, max abs difference.

Every comparison computes all three on the first output both answers have (in the
signature's order), row by row over the batch: top-1 agreement is the fraction of rows
with the same argmax (meaningful for classifiers), cosine the mean cosine similarity of
rows (meaningful for embeddings), max abs diff the largest element-wise difference: the
same figures, computed by the same functions, as a compression job's fidelity to the parent
(`compressors.quality`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compressors.measure.quality import cosine_similarities, max_abs_error, top1_agreement


@dataclass(frozen=True)
class Agreement:
    top1: float
    cosine: float
    max_abs_diff: float


def compare(a: dict[str, np.ndarray], b: dict[str, np.ndarray], order: list[str]) -> Agreement:
    """Agreement of outputs `a` and `b`; ValueError when they share no comparable output."""
    name = next((n for n in order if n in a and n in b), None)
    if name is None:
        raise ValueError(f"no common output to compare (got {sorted(a)} and {sorted(b)})")
    x, y = _rows(a[name]), _rows(b[name])
    if x.shape != y.shape:
        raise ValueError(f"output {name!r} has shape {a[name].shape} vs {b[name].shape}")
    if x.size == 0:
        return Agreement(1.0, 1.0, 0.0)
    cosine = float(np.mean(cosine_similarities(x, y)))
    return Agreement(top1_agreement(x, y), cosine, max_abs_error(x, y))


def _rows(array: np.ndarray) -> np.ndarray:
    """The output as float64 rows: first axis = batch, everything else flattened."""
    values = np.asarray(array, dtype=np.float64)
    if values.ndim == 0:
        return values.reshape(1, 1)
    if values.ndim == 1:
        return values.reshape(-1, 1)
    return values.reshape(values.shape[0], -1)
