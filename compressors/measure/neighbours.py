"""Whether a compressed embedding model ranks samples against each other as its parent does.

A mean cosine of 0.99 to the parent says each embedding moved a little; what a search or
clustering user sees is whether the nearest neighbours moved. Over one set of samples:

* `nn_top1_agreement`: the fraction of samples whose nearest neighbour is the same;
* `nn_overlap_at_5`: the mean overlap of the 5 nearest neighbours;
* `pairwise_spearman`: the rank correlation of all pairwise cosine similarities.
"""

from __future__ import annotations

import numpy as np

NEIGHBOURS = 5
MIN_SAMPLES = NEIGHBOURS + 1


def _similarities(embeddings: np.ndarray) -> np.ndarray:
    e = np.asarray(embeddings, np.float64)
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    e = e / np.where(norms > 0, norms, 1.0)
    sims = e @ e.T
    np.fill_diagonal(sims, -np.inf)
    return sims


def _ranks(values: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(values, kind="stable"), kind="stable").astype(np.float64)


def neighbour_agreement(outputs: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """The three figures above for embeddings [samples, features]; {} under MIN_SAMPLES."""
    if len(outputs) < MIN_SAMPLES:
        return {}
    o_sims, r_sims = _similarities(outputs), _similarities(reference)
    o_top = np.argsort(-o_sims, axis=1, kind="stable")[:, :NEIGHBOURS]
    r_top = np.argsort(-r_sims, axis=1, kind="stable")[:, :NEIGHBOURS]
    overlap = [len(set(a) & set(b)) / NEIGHBOURS for a, b in zip(o_top, r_top, strict=True)]
    upper = np.triu_indices(len(outputs), 1)
    o_ranks, r_ranks = _ranks(o_sims[upper]), _ranks(r_sims[upper])
    spearman = np.corrcoef(o_ranks, r_ranks)[0, 1] if o_ranks.std() and r_ranks.std() else 1.0
    return {
        "nn_top1_agreement": float((o_top[:, 0] == r_top[:, 0]).mean()),
        f"nn_overlap_at_{NEIGHBOURS}": float(np.mean(overlap)),
        "pairwise_spearman": float(spearman),
    }
