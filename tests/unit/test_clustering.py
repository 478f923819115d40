"""cluster.kmeans: at most k shared values per layer, smaller gzip, a model that still works."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from compressors import registry
from compressors.base import Artifact, StepContext
from compressors.clustering.kmeans import cluster_weights, kmeans_1d
from compressors.pipeline import parse_steps, run_recipe
from examples.models import onnx_accuracy
from pareto_core.errors import InvalidArgument
from pareto_core.onnx_signature import onnx_signature


@pytest.fixture
def parent(digits_model) -> Artifact:
    path = digits_model.path
    return Artifact(path, "onnx", onnx_signature(onnx.load(str(path))))


def cluster(tmp_path: Path, parent: Artifact, config: dict, seed: int = 0):
    work = tmp_path / "work"
    work.mkdir(parents=True, exist_ok=True)
    cfg = registry.parse_config("cluster.kmeans", config)
    return registry.get("cluster.kmeans").apply(parent, cfg, StepContext(work, parent, seed=seed))


def weights(path: Path) -> dict[str, np.ndarray]:
    model = onnx.load(str(path))
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


@pytest.mark.parametrize("init", ["kmeans++", "linear", "density"])
def test_digits_layers_get_at_most_k_values_and_compress(tmp_path, parent, digits_model, init):
    result = cluster(tmp_path, parent, {"clusters": 16, "init": init})
    report, after = result.report, weights(result.artifact.path)

    assert [x["weight"] for x in report["layers"]] == ["2.weight", "6.weight"]
    assert report["skipped"] == [{"weight": "0.weight", "reason": "144 < min_size"}]
    for layer in report["layers"]:
        assert len(np.unique(after[layer["weight"]])) == layer["unique_values"] <= 16
        assert layer["gzip_bytes_after"] < layer["gzip_bytes_before"] / 2
        assert layer["packed_bytes"] < layer["bytes"] / 6
    assert report["gzip_bytes_after"] < report["gzip_bytes_before"] / 2
    assert len(np.unique(after["0.weight"])) == 144  # small layer left as it was
    accuracy = onnx_accuracy(result.artifact.path, digits_model.X_test, digits_model.y_test)
    assert accuracy >= digits_model.accuracy - 0.03
    assert result.artifact.signature == parent.signature


def test_same_seed_same_result(tmp_path, parent):
    first = cluster(tmp_path / "a", parent, {"clusters": 8}, seed=3)
    second = cluster(tmp_path / "b", parent, {"clusters": 8}, seed=3)
    assert first.artifact.path.read_bytes() == second.artifact.path.read_bytes()


def test_kmeans_1d_converges_to_well_separated_groups():
    rng = np.random.default_rng(0)
    values = np.concatenate([c + 0.01 * rng.standard_normal(500) for c in (-1.0, 0.5, 2.0)])
    centroids, labels = kmeans_1d(values, 3, "kmeans++", seed=0)
    np.testing.assert_allclose(centroids, [-1.0, 0.5, 2.0], atol=0.01)
    assert np.bincount(labels).tolist() == [500, 500, 500]


def test_fewer_distinct_values_than_k_are_kept_exactly():
    values = np.array([0.25, -1.0, 0.25, 3.0])
    centroids, labels = kmeans_1d(values, 16, "linear", seed=0)
    np.testing.assert_array_equal(centroids[labels], values)


def test_zeros_from_pruning_stay_zero():
    rng = np.random.default_rng(1)
    array = rng.standard_normal((64, 32)).astype(np.float32)
    array[rng.random(array.shape) < 0.6] = 0
    clustered, values = cluster_weights(array, 8, "kmeans++", 0, keep_zeros=True)

    assert values <= 8 and clustered.dtype == np.float32
    np.testing.assert_array_equal(clustered == 0, array == 0)


def test_pruned_then_clustered_keeps_the_sparsity(tmp_path, parent):
    steps = parse_steps(
        [
            {"technique": "prune.magnitude", "config": {"sparsity": 0.5, "scope": "per_layer"}},
            {"technique": "cluster.kmeans", "config": {"clusters": 8}},
        ]
    )
    artifact, reports = run_recipe(
        parent, steps, lambda i, step: StepContext(tmp_path / f"{i}-{step.name}", parent)
    )

    after = weights(artifact.path)
    for layer in reports[1]["report"]["layers"]:
        values = after[layer["weight"]]
        assert np.mean(values == 0) == pytest.approx(0.5, abs=1e-3)
        assert len(np.unique(values)) <= 8


@pytest.mark.parametrize(
    ("config", "field"),
    [({"clusters": 1}, "clusters"), ({"init": "random"}, "init"), ({"min_size": 0}, "min_size")],
)
def test_config_errors_name_the_field(config, field):
    with pytest.raises(InvalidArgument, match=rf"config\.{field}"):
        registry.parse_config("cluster.kmeans", config)
