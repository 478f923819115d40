"""cluster.kmeans: weight sharing, k clusters per layer (as TFMOT's weight clustering).

Each eligible weight tensor is clustered into at most `clusters` values with a 1-D k-means
(Lloyd's algorithm on sorted centroids; deterministic for a given seed) and every weight is
replaced by its centroid. The result is a dense ONNX model with few distinct values per
layer: the same file size, but it compresses well, which is what TFMOT reports (the gzip of
the weights). The report gives, per layer and in total, the gzip size of the weight payload
before and after, and the packed size (centroids + ceil(log2 k)-bit indices). With
`preserve_zeros` the exact zeros left by pruning stay zero (one of the k values).
"""

from __future__ import annotations

import gzip
import math
from typing import Any, Literal

import numpy as np
from pydantic import Field

from compressors.base import (
    Artifact,
    ProgressFn,
    StepContext,
    StepResult,
    Technique,
    TechniqueConfig,
)
from compressors.graph.edit import set_initializer, weight_refs
from compressors.graph.files import load_model, save_model
from compressors.registry import register

MAX_ITERATIONS = 100
INIT_SAMPLE = 65_536


class KMeansConfig(TechniqueConfig):
    clusters: int = Field(16, ge=2, le=256, description="shared values per layer")
    init: Literal["kmeans++", "linear", "density"] = "kmeans++"
    op_types: tuple[Literal["Conv", "MatMul", "Gemm"], ...] = Field(
        ("Conv", "MatMul", "Gemm"), min_length=1
    )
    min_size: int = Field(256, ge=1, description="weights with fewer elements are kept")
    preserve_zeros: bool = True
    seed: int | None = Field(None, description="default: the job's seed")


def _initial_centroids(
    values: np.ndarray, k: int, init: str, rng: np.random.Generator
) -> np.ndarray:
    if init == "linear":  # evenly spaced between min and max (TFMOT's LINEAR)
        return np.linspace(values.min(), values.max(), k)
    if init == "density":  # at quantiles of the distribution (TFMOT's DENSITY_BASED)
        return np.quantile(values, (np.arange(k) + 0.5) / k)
    if len(values) > INIT_SAMPLE:  # k-means++ seeding on a sample: k passes over it
        values = rng.choice(values, INIT_SAMPLE, replace=False)
    centroids = [values[rng.integers(len(values))]]
    distance = (values - centroids[0]) ** 2
    for _ in range(1, k):
        total = distance.sum()
        if total == 0:
            break  # fewer distinct values than k
        pick = rng.choice(len(values), p=distance / total)
        centroids.append(values[pick])
        distance = np.minimum(distance, (values - values[pick]) ** 2)
    return np.array(centroids)


def _assign(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (centroids sorted ascending)."""
    midpoints = (centroids[1:] + centroids[:-1]) / 2
    return np.searchsorted(midpoints, values)


def kmeans_1d(values: np.ndarray, k: int, init: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(centroids, labels) for 1-D `values`: at most k distinct centroids, float64.

    Lloyd's iterations on the sorted values: the clusters of sorted centroids are
    contiguous runs, so each iteration is a binary search per boundary and prefix sums.
    """
    values = values.astype(np.float64).ravel()
    if len(np.unique(values)) <= k:
        centroids, labels = np.unique(values, return_inverse=True)
        return centroids, labels
    ordered = np.sort(values)
    prefix = np.concatenate([[0.0], np.cumsum(ordered)])
    centroids = np.unique(_initial_centroids(values, k, init, np.random.default_rng(seed)))
    for _ in range(MAX_ITERATIONS):
        cuts = np.searchsorted(ordered, (centroids[1:] + centroids[:-1]) / 2, side="right")
        edges = np.concatenate([[0], cuts, [len(ordered)]])
        counts = np.diff(edges)
        sums = prefix[edges[1:]] - prefix[edges[:-1]]
        new = np.unique(sums[counts > 0] / counts[counts > 0])
        if np.array_equal(new, centroids):
            break
        centroids = new
    return centroids, _assign(values, centroids)


def cluster_weights(
    array: np.ndarray, k: int, init: str, seed: int, keep_zeros: bool
) -> tuple[np.ndarray, int]:
    """`array` with every value replaced by its centroid; returns (clustered, n_values).
    With `keep_zeros`, exact zeros stay zero and the other values get k - 1 clusters."""
    flat = array.astype(np.float64).ravel()
    zeros = flat == 0 if keep_zeros else np.zeros(flat.shape, dtype=bool)
    out = np.zeros_like(flat)
    if not zeros.all():
        centroids, labels = kmeans_1d(flat[~zeros], k - 1 if zeros.any() else k, init, seed)
        out[~zeros] = centroids[labels]
    clustered = out.reshape(array.shape).astype(array.dtype)
    return clustered, len(np.unique(clustered))


def gzip_size(array: np.ndarray) -> int:
    return len(gzip.compress(np.ascontiguousarray(array).tobytes(), compresslevel=6, mtime=0))


def packed_size(n: int, k: int, itemsize: int) -> int:
    """Bytes of a k-entry codebook plus n indices of ceil(log2 k) bits."""
    return k * itemsize + math.ceil(n * max(1, math.ceil(math.log2(max(k, 2)))) / 8)


def _layer(name: str, op: str, before: np.ndarray, after: np.ndarray, values: int) -> dict:
    return {
        "weight": name,
        "op": op,
        "shape": list(before.shape),
        "unique_values": values,
        "bytes": int(before.nbytes),
        "gzip_bytes_before": gzip_size(before),
        "gzip_bytes_after": gzip_size(after),
        "packed_bytes": packed_size(before.size, values, before.itemsize),
        "mean_abs_error": float(np.mean(np.abs(after.astype(np.float64) - before))),
    }


def _totals(layers: list[dict]) -> dict[str, Any]:
    total = {key: sum(x[key] for x in layers) for key in ("bytes", "packed_bytes")}
    before = sum(x["gzip_bytes_before"] for x in layers)
    after = sum(x["gzip_bytes_after"] for x in layers)
    ratio = round(after / before, 4) if before else None
    return {**total, "gzip_bytes_before": before, "gzip_bytes_after": after, "gzip_ratio": ratio}


def cluster_model(
    model: Any, config: KMeansConfig, seed: int, progress: ProgressFn | None = None
) -> dict[str, Any]:
    """Cluster the eligible weights of `model` in place; returns the report."""
    refs, skipped = weight_refs(model.graph, config.op_types)
    layers = []
    for i, ref in enumerate(refs):
        if ref.array.size < config.min_size:
            skipped.append({"weight": ref.name, "reason": f"{ref.array.size} < min_size"})
            continue
        clustered, values = cluster_weights(
            ref.array, config.clusters, config.init, seed, config.preserve_zeros
        )
        set_initializer(model.graph, ref.name, clustered)
        layers.append(_layer(ref.name, ref.op_type, ref.array, clustered, values))
        if progress is not None:
            progress((i + 1) / len(refs), f"clustered {ref.name}", {})
    return {"clusters": config.clusters, "layers": layers, "skipped": skipped, **_totals(layers)}


@register
class KMeansClustering(Technique):
    name = "cluster.kmeans"
    config_cls = KMeansConfig
    description = "Weight sharing: k k-means centroids per layer (dense ONNX, gzip size)."

    def apply(self, artifact: Artifact, config: KMeansConfig, ctx: StepContext) -> StepResult:
        model = load_model(artifact.path)
        seed = ctx.seed if config.seed is None else config.seed
        report = cluster_model(model, config, seed, ctx.progress)
        out = save_model(model, ctx.work_dir / "clustered.onnx")
        return StepResult(out, report)
