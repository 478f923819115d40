"""GPTQ (Frantar et al., 2023) for quantize.weight_only, in numpy.

Round-to-nearest rounds every weight on its own. GPTQ rounds the weights of a linear layer
one input channel at a time and moves each rounding error onto the channels not yet
rounded, in the proportions that keep the layer's output on the calibration data closest
to the float one: the inverse of the Hessian H = 2 X^T X of the layer's inputs X says how.
Blocks of `block_size` input channels share a scale and a zero point (as MatMulNBits
stores them), fixed when the first channel of the block is reached.

Written here rather than taken from onnxruntime 1.32 (`GPTQWeightOnlyQuantConfig`): on
MiniLM that port gives the round-to-nearest result whatever the calibration data (pooled
cosine 0.973 both), while this gives 0.991 at 4 bits, block 32.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from compressors.quantization.nbits import Blocks, block_grid, encode

COLUMNS_PER_STEP = 128  # channels updated at once (lazy batch updates; the result is the same)


def hessians(
    model_path: Path,
    tensors: Sequence[str],
    feeds: dict[str, np.ndarray],
    work_dir: Path,
    **run: Any,
) -> dict[str, np.ndarray]:
    """2 X^T X / n of each of `tensors` (the inputs of the layers) over the calibration
    data, real tokens only (see `compressors.graph.taps`)."""
    from compressors.graph.taps import collect_rows

    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}

    def add(name: str, rows: np.ndarray) -> None:
        sums[name] = sums.get(name, 0) + rows.T @ rows
        counts[name] = counts.get(name, 0) + len(rows)

    collect_rows(model_path, tensors, feeds, add, work_dir, **run)
    return {name: 2.0 * sums[name] / max(counts[name], 1) for name in sums}


def _inverse_cholesky(hessian: np.ndarray, damp: float) -> np.ndarray:
    """Upper Cholesky factor of H^-1, H dampened by `damp` x its mean diagonal."""
    h = hessian.copy()
    h[np.diag_indices_from(h)] += damp * np.mean(np.diag(h)) + 1e-12
    return np.linalg.cholesky(np.linalg.inv(h)).T


def gptq(
    weight: np.ndarray, hessian: np.ndarray, bits: int, block: int, symmetric: bool, damp: float
) -> Blocks:
    """Quantize `weight` [K, N] (as in X @ W) with the Hessian [K, K] of X; the codes are of
    W^T [N, K], blocks along K."""
    w = np.asarray(weight, np.float64).T.copy()
    n, k = w.shape
    hessian = np.asarray(hessian, np.float64).copy()
    dead = np.diag(hessian) == 0  # channels never active: their weights do not matter
    hessian[dead, dead] = 1.0
    w[:, dead] = 0.0
    h_inv = _inverse_cholesky(hessian, damp)
    codes = np.zeros((n, k), np.uint8)
    scales = np.zeros((n, k // block))
    zero_points = None if symmetric else np.zeros((n, k // block))
    step = max(COLUMNS_PER_STEP, block)  # a block's grid sees its channels fully updated
    for start in range(0, k, step):
        stop = min(start + step, k)
        errors = np.zeros((n, stop - start))
        for col in range(start, stop):
            g = col // block
            if col % block == 0:
                grid = block_grid(w[:, col : col + block], bits, symmetric)
                scales[:, g] = grid[0]
                if zero_points is not None and grid[1] is not None:
                    zero_points[:, g] = grid[1]
            zp = None if zero_points is None else zero_points[:, g]
            q = encode(w[:, col : col + 1], scales[:, g], zp, bits)[:, 0]
            codes[:, col] = q
            center = 2 ** (bits - 1) if zp is None else zp
            error = (w[:, col] - (q - center) * scales[:, g]) / h_inv[col, col]
            w[:, col:stop] -= np.outer(error, h_inv[col, col:stop])
            errors[:, col - start] = error
        w[:, stop:] -= errors @ h_inv[start:stop, stop:]
    return Blocks(codes, scales, zero_points, bits, block)
