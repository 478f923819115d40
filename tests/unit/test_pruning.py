"""prune.magnitude and prune.structured on the digits CNN, a torch.export archive and small
handmade graphs; the fine-tuning loop and the ONNX <-> torch bridge they share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from compressors import registry
from compressors.base import Artifact, Dataset, StepContext
from compressors.pruning.magnitude import magnitude_masks
from compressors.training.finetune import train
from examples.models import digits_split, onnx_accuracy
from pareto_core.errors import Cancelled, FailedPrecondition, InvalidArgument
from pareto_core.onnx_signature import onnx_signature
from pareto_core.tensors import Signature, TensorSpec


@pytest.fixture
def parent(digits_model) -> Artifact:
    path = digits_model.path
    return Artifact(path, "onnx", onnx_signature(onnx.load(str(path))))


@pytest.fixture(scope="module")
def digits_train() -> Dataset:
    x_train, _, y_train, _ = digits_split(0)
    return Dataset("digits-train", {"pixels": x_train}, y_train)


def apply(name: str, parent: Artifact, config: dict, work: Path, **ctx_args):
    work.mkdir(parents=True, exist_ok=True)
    cfg = registry.parse_config(name, config)
    return registry.get(name).apply(parent, cfg, StepContext(work, parent, **ctx_args))


def weights(path: Path) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


def run(path: Path, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)


# -- prune.magnitude -----------------------------------------------------------------------


def test_global_magnitude_pruning_on_onnx_reaches_the_target(tmp_path, parent, digits_model):
    before = parent.path.read_bytes()
    result = apply("prune.magnitude", parent, {"sparsity": 0.6}, tmp_path)
    report, after = result.report, weights(result.artifact.path)

    assert report["achieved_sparsity"] == pytest.approx(0.6, abs=1e-3)
    assert [x["weight"] for x in report["layers"]] == ["2.weight", "6.weight"]
    assert len({x["sparsity"] for x in report["layers"]}) == 2  # one threshold, not one ratio
    for layer in report["layers"]:
        assert np.mean(after[layer["weight"]] == 0) == pytest.approx(layer["sparsity"])
    assert report["skipped"] == [{"weight": "0.weight", "reason": "144 < min_size"}]
    assert not np.any(after["0.weight"] == 0)
    assert result.artifact.signature == parent.signature
    assert parent.path.read_bytes() == before
    accuracy = onnx_accuracy(result.artifact.path, digits_model.X_test, digits_model.y_test)
    assert accuracy > 0.5


def test_per_layer_scope_prunes_each_layer_to_the_target(tmp_path, parent):
    config = {"sparsity": 0.5, "scope": "per_layer", "min_size": 1}
    result = apply("prune.magnitude", parent, config, tmp_path)

    layers = result.report["layers"]
    assert [x["weight"] for x in layers] == ["0.weight", "2.weight", "6.weight"]
    assert [x["sparsity"] for x in layers] == [0.5, 0.5, 0.5]


def test_op_types_limit_what_is_pruned(tmp_path, parent):
    result = apply("prune.magnitude", parent, {"sparsity": 0.5, "op_types": ["Gemm"]}, tmp_path)
    assert [x["op"] for x in result.report["layers"]] == ["Gemm"]
    assert not np.any(weights(result.artifact.path)["2.weight"] == 0)


def test_magnitude_masks_zero_exactly_the_smallest():
    a = np.array([[0.1, -5.0], [3.0, -0.2]])
    b = np.array([0.05, 4.0, -0.3, 2.0])
    keep_a, keep_b = magnitude_masks([a, b], 0.5, "global")
    assert keep_a.tolist() == [[False, True], [True, False]]
    assert keep_b.tolist() == [False, True, False, True]
    keep_a, keep_b = magnitude_masks([a, b], 0.25, "per_layer")
    assert (~keep_a).sum() == 1 and (~keep_b).sum() == 1


def test_fine_tuning_keeps_the_zeros_and_reports_epochs(
    tmp_path, parent, digits_model, digits_train
):
    events: list[tuple[float, str, dict]] = []
    config = {
        "sparsity": 0.8,
        "scope": "per_layer",
        "finetune_epochs": 2,
        "finetune_lr": 3e-3,
    }
    result = apply(
        "prune.magnitude",
        parent,
        config,
        tmp_path,
        datasets={"training": digits_train},
        progress=lambda f, m, d: events.append((f, m, d)),
    )

    assert [layer["sparsity"] >= 0.8 - 1e-3 for layer in result.report["layers"]] == [True] * 2
    epochs = [d for _, _, d in events if "epoch" in d]
    assert [e["epoch"] for e in epochs] == [1.0, 2.0] and all(e["loss"] > 0 for e in epochs)
    assert result.report["finetune"]["loss"] == epochs[-1]["loss"]
    assert result.artifact.signature == parent.signature
    accuracy = onnx_accuracy(result.artifact.path, digits_model.X_test, digits_model.y_test)
    assert accuracy >= digits_model.accuracy - 0.05


def test_fine_tuning_without_a_training_dataset_is_a_failed_precondition(tmp_path, parent):
    with pytest.raises(FailedPrecondition, match=r"prune.magnitude needs a 'training' dataset"):
        apply("prune.magnitude", parent, {"finetune_epochs": 1}, tmp_path)


def test_fine_tuning_on_an_unlabeled_dataset_names_it(tmp_path, parent, digits_train):
    unlabeled = Dataset("no-labels", digits_train.inputs)
    with pytest.raises(FailedPrecondition, match=r"dataset 'no-labels' has no 'labels'"):
        apply(
            "prune.magnitude",
            parent,
            {"finetune_epochs": 1},
            tmp_path,
            datasets={"training": unlabeled},
        )


def test_torch_export_parent_is_pruned_fine_tuned_and_exported(tmp_path, pt2_bytes):
    path = tmp_path / "tiny.pt2"
    path.write_bytes(pt2_bytes)
    signature = Signature(
        (TensorSpec("x", "FP32", (-1, 4)),), (TensorSpec("relu", "FP32", (-1, 3)),)
    )
    parent = Artifact(path, "torch_export", signature)
    rng = np.random.default_rng(0)
    data = Dataset(
        "d", {"x": rng.standard_normal((32, 4)).astype(np.float32)}, rng.integers(0, 3, 32)
    )
    config = {"sparsity": 0.5, "min_size": 1, "finetune_epochs": 1, "finetune_batch_size": 8}
    result = apply("prune.magnitude", parent, config, tmp_path / "w", datasets={"training": data})

    assert result.artifact.format == "onnx"
    assert result.artifact.signature == signature
    assert result.report["achieved_sparsity"] == 0.5
    (out,) = run(result.artifact.path, {"x": np.ones((5, 4), dtype=np.float32)})
    assert out.shape == (5, 3)


# -- prune.structured ----------------------------------------------------------------------


def test_structured_pruning_removes_channels_and_keeps_the_interface(tmp_path, parent):
    result = apply("prune.structured", parent, {"ratio": 0.5}, tmp_path)
    report = result.report

    assert [(x["channels_before"], x["channels_after"]) for x in report["layers"]] == [
        (16, 8),
        (32, 16),
        (10, 10),  # the classifier keeps its outputs
    ]
    assert report["params_after"] < report["params_before"] / 2
    assert result.artifact.signature == parent.signature
    shapes = {k: v.shape for k, v in weights(result.artifact.path).items() if v.ndim > 1}
    assert sorted(shapes.values()) == [(8, 1, 3, 3), (10, 256), (16, 8, 3, 3)]
    for batch in (1, 7):
        (logits,) = run(result.artifact.path, {"pixels": np.zeros((batch, 1, 8, 8), np.float32)})
        assert logits.shape == (batch, 10)
    assert result.artifact.path.stat().st_size < parent.path.stat().st_size / 2


def test_structured_pruning_with_fine_tuning_recovers_accuracy(
    tmp_path, parent, digits_model, digits_train
):
    config = {"ratio": 0.5, "finetune_epochs": 4, "finetune_lr": 3e-3}
    result = apply(
        "prune.structured", parent, config, tmp_path, datasets={"training": digits_train}
    )

    assert result.report["finetune"]["epochs"] == 4
    accuracy = onnx_accuracy(result.artifact.path, digits_model.X_test, digits_model.y_test)
    assert accuracy >= digits_model.accuracy - 0.03


def test_structured_fine_tuning_stops_when_cancelled(tmp_path, parent, digits_train):
    with pytest.raises(Cancelled, match="fine-tuning epoch 1"):
        apply(
            "prune.structured",
            parent,
            {"finetune_epochs": 3},
            tmp_path,
            datasets={"training": digits_train},
            is_cancelled=lambda: True,
        )


def test_model_the_bridge_cannot_convert_is_a_failed_precondition(tmp_path):
    graph = helper.make_graph(
        [
            helper.make_node("GreaterOrEqual", ["x", "zero"], ["ge"]),
            helper.make_node("Cast", ["ge"], ["y"], to=TensorProto.FLOAT),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[numpy_helper.from_array(np.zeros(3, np.float32), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "ge.onnx"
    onnx.save(model, str(path))
    parent = Artifact(path, "onnx", onnx_signature(model))
    with pytest.raises(FailedPrecondition, match="no converter for GreaterOrEqual"):
        apply("prune.structured", parent, {}, tmp_path / "w")


def test_model_without_prunable_layers_is_a_failed_precondition(tmp_path, onnx_model_factory):
    model = onnx_model_factory()
    path = tmp_path / "tiny.onnx"
    onnx.save(model, str(path))
    parent = Artifact(path, "onnx", onnx_signature(model))
    with pytest.raises(FailedPrecondition, match="at least one Conv/Linear layer"):
        apply("prune.structured", parent, {}, tmp_path / "w")


# -- fine-tuning loop and configs ----------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.full(8, 0.5), "expected 1-D integer class ids"),
        (np.full(8, 12), "class id 12 is out of range for a model with 3 classes"),
        (np.zeros(5, np.int64), "expected 8 non-negative class ids, got 5"),
    ],
)
def test_bad_labels_are_invalid_arguments(labels, message):
    import torch

    data = Dataset("d", {"x": np.zeros((8, 4), np.float32)}, labels)
    with pytest.raises(InvalidArgument, match=message):
        train(torch.nn.Linear(4, 3), data, input_names=["x"], epochs=1)


@pytest.mark.parametrize(
    ("name", "config", "field"),
    [
        ("prune.magnitude", {"sparsity": 1.0}, "sparsity"),
        ("prune.magnitude", {"scope": "local"}, "scope"),
        ("prune.magnitude", {"op_types": ["Relu"]}, "op_types"),
        ("prune.magnitude", {"finetune_epochs": -1}, "finetune_epochs"),
        ("prune.structured", {"ratio": 0.0}, "ratio"),
        ("prune.structured", {"norm": 3}, "norm"),
        ("prune.structured", {"finetune_lr": 0}, "finetune_lr"),
    ],
)
def test_config_errors_name_the_field(name, config, field):
    with pytest.raises(InvalidArgument, match=rf"config\.{field}"):
        registry.parse_config(name, config)
