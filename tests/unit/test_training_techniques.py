"""distill.knowledge, quantize.qat and prune.gradual applied to the real digits CNN (tiny
runs: a few epochs on a subset), and their CreateJob checks."""

from __future__ import annotations

import numpy as np
import pytest

from compressors import registry
from compressors.base import Artifact, Dataset, JobInfo, ModelInfo, StepContext
from compressors.graph.files import artifact_for, load_model, op_histogram
from compressors.graph.run import outputs_of
from examples.models import digits_split, onnx_accuracy
from pareto_core.errors import FailedPrecondition, InvalidArgument, NotFound
from pareto_core.formats import FORMAT_ONNX, FORMAT_TORCH_EXPORT
from pareto_core.tensors import Signature, TensorSpec


@pytest.fixture(scope="module")
def digits_data():
    x_train, x_test, y_train, y_test = digits_split(0)
    train = Dataset("digits-train", {"pixels": x_train[:400]}, y_train[:400])
    return train, Dataset("digits-eval", {"pixels": x_test}, y_test)


def run(name: str, model, config: dict, datasets: dict, tmp_path):
    artifact = artifact_for(model.path)
    ctx = StepContext(tmp_path / "work", artifact, datasets, checkpoint_dir=tmp_path / "ckpt")
    ctx.work_dir.mkdir()
    return registry.get(name).apply(artifact, registry.parse_config(name, config), ctx)


def test_distillation_makes_a_quarter_size_student_that_learned(
    digits_model, digits_data, tmp_path
):
    train, evaluation = digits_data
    config = {"width": 0.35, "init": "teacher", "epochs": 3, "lr": 3e-3}
    result = run("distill.knowledge", digits_model, config, {"training": train}, tmp_path)
    report = result.report
    assert report["params_student"] <= report["params_teacher"] / 4
    assert report["labels_used"] and report["transfer_samples"] == 360
    training = report["training"]
    assert training["epochs_run"] == 3 and len(training["heldout_per_epoch"]) == 3
    assert training["loss_per_epoch"][-1] < training["loss_per_epoch"][0]
    assert result.artifact.signature == artifact_for(digits_model.path).signature
    accuracy = onnx_accuracy(result.artifact.path, evaluation.inputs["pixels"], evaluation.labels)
    assert accuracy > 0.6  # 3 epochs on 360 images: far above chance (0.1)


def test_qat_reports_its_gain_over_ptq(digits_model, digits_data, tmp_path):
    train, evaluation = digits_data
    datasets = {"training": train, "evaluation": evaluation}
    result = run("quantize.qat", digits_model, {"epochs": 1}, datasets, tmp_path)
    scores = result.report["accuracy"]
    assert scores["dataset"] == "digits-eval" and scores["samples"] == 360
    assert scores["gain"] == pytest.approx(scores["qat_int8"] - scores["ptq_int8"], abs=1e-6)
    ops = op_histogram(load_model(result.artifact.path))
    assert ops.get("QuantizeLinear", 0) > 0 and ops.get("DequantizeLinear", 0) > 0
    accuracy = onnx_accuracy(result.artifact.path, evaluation.inputs["pixels"], evaluation.labels)
    assert accuracy == pytest.approx(scores["qat_int8"])


def test_gradual_pruning_reaches_the_final_sparsity(digits_model, digits_data, tmp_path):
    train, _ = digits_data
    config = {"final_sparsity": 0.7, "epochs": 2, "frequency": 2}
    result = run("prune.gradual", digits_model, config, {"training": train}, tmp_path)
    assert result.report["achieved_sparsity"] == pytest.approx(0.7, abs=0.01)
    model = load_model(result.artifact.path)
    from onnx import numpy_helper

    big = [numpy_helper.to_array(t) for t in model.graph.initializer if np.prod(t.dims) >= 256]
    zeros = sum(int((a == 0).sum()) for a in big) / sum(a.size for a in big)
    assert zeros == pytest.approx(0.7, abs=0.01)


def test_gradual_pruning_after_structured_removal_is_smaller_and_sparse(
    digits_model, digits_data, tmp_path
):
    train, _ = digits_data
    config = {"final_sparsity": 0.5, "structured_ratio": 0.25, "epochs": 1, "frequency": 2}
    result = run("prune.gradual", digits_model, config, {"training": train}, tmp_path)
    assert result.report["achieved_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert result.artifact.path.stat().st_size < digits_model.path.stat().st_size


def test_a_transformer_teacher_needs_an_uploaded_student(minilm_model, tmp_path):
    from examples.models import tokenize

    transfer = Dataset("sentences", tokenize(["A sentence to embed here."] * 4, 16))
    with pytest.raises(FailedPrecondition, match=r"cannot derive a student .*\.pt2"):
        run(
            "distill.knowledge",
            minilm_model,
            {"objective": "embedding"},
            {"training": transfer},
            tmp_path,
        )


# -- CreateJob checks -------------------------------------------------------------------------


def _model(name: str, fmt: str, classes: int = 10) -> ModelInfo:
    signature = Signature(
        inputs=(TensorSpec("pixels", "FP32", (-1, 1, 8, 8)),),
        outputs=(TensorSpec("logits", "FP32", (-1, classes)),),
    )
    return ModelInfo(name, 1, fmt, signature)


def _job(datasets: dict, **models: ModelInfo) -> JobInfo:
    def find(name: str) -> ModelInfo:
        if name not in models:
            raise NotFound(f"model {name!r} not found")
        return models[name]

    return JobInfo(_model("digits", FORMAT_ONNX), datasets, find)


UNLABELED = {"training": ("pixels-only", False)}
LABELED = {"training": ("digits-train", True)}


@pytest.mark.parametrize(
    ("technique", "config", "datasets", "error", "pattern"),
    [
        ("distill.knowledge", {}, {}, InvalidArgument, "needs a 'training' dataset"),
        ("distill.knowledge", {"alpha": 0.0}, UNLABELED, InvalidArgument, "has no 'labels'"),
        ("distill.knowledge", {"labels": "required"}, UNLABELED, InvalidArgument, "needs labels"),
        ("quantize.qat", {}, UNLABELED, InvalidArgument, "'pixels-only' has no 'labels'"),
        ("prune.gradual", {}, UNLABELED, InvalidArgument, "'pixels-only' has no 'labels'"),
        ("distill.knowledge", {"teacher": "nope"}, LABELED, NotFound, "'nope'"),
        ("distill.knowledge", {"student": "onnx"}, LABELED, FailedPrecondition, "torch.export"),
        (
            "distill.knowledge",
            {"student": "five"},
            LABELED,
            FailedPrecondition,
            "incompatible outputs: teacher 'logits' is FP32[batch,10], student 'logits' is "
            "FP32[batch,5]",
        ),
    ],
)
def test_create_job_checks(technique, config, datasets, error, pattern):
    job = _job(
        datasets, onnx=_model("onnx", FORMAT_ONNX), five=_model("five", FORMAT_TORCH_EXPORT, 5)
    )
    parsed = registry.parse_config(technique, config)
    with pytest.raises(error, match=pattern.replace("[", r"\[").replace("]", r"\]")):
        registry.get(technique).check_job(parsed, job, "recipes[0].steps[0].config")


def test_create_job_accepts_an_unlabeled_transfer_set_and_a_fitting_student():
    job = _job(UNLABELED, ten=_model("ten", FORMAT_TORCH_EXPORT))
    config = registry.parse_config("distill.knowledge", {"student": "ten"})
    registry.get("distill.knowledge").check_job(config, job, "recipes[0].steps[0].config")


def test_an_uploaded_pt2_student_is_trained_and_exported_with_dynamic_batch(
    digits_model, digits_data, tmp_path
):
    import torch

    from compressors.graph.files import artifact_for

    class Small(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.head = torch.nn.Linear(4 * 64, 10)

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.conv(pixels)).flatten(1))

    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(
        Small(), (torch.zeros(2, 1, 8, 8),), dynamic_shapes={"pixels": {0: batch}}
    )
    path = tmp_path / "small.pt2"
    torch.export.save(program, path)
    teacher = artifact_for(digits_model.path)
    student = Artifact(path, FORMAT_TORCH_EXPORT, teacher.signature)
    train, evaluation = digits_data
    ctx = StepContext(
        tmp_path / "work", teacher, {"training": train}, models={"small": student}.__getitem__
    )
    ctx.work_dir.mkdir()
    config = registry.parse_config("distill.knowledge", {"student": "small", "epochs": 2})
    result = registry.get("distill.knowledge").apply(teacher, config, ctx)
    assert result.report["student"] == "uploaded small.pt2"
    assert result.artifact.signature == teacher.signature  # names and dynamic batch kept
    for n in (1, 7):
        x = evaluation.inputs["pixels"][:n]
        assert outputs_of(result.artifact.path, {"pixels": x}, "logits", 1, n).shape == (n, 10)


@pytest.mark.parametrize(
    ("config", "pattern"),
    [
        ({"teacher_hidden": "t"}, "teacher_hidden and hidden_weight > 0 go together"),
        ({"teacher_hidden": "t", "hidden_weight": 1.0}, "needs an uploaded student"),
        ({"student": "s", "teacher_hidden": "t", "hidden_weight": 1, "mixup": 0.2}, "mixup"),
        ({"temperature": 0}, "config.temperature"),
    ],
)
def test_distillation_config_errors_name_the_field(config, pattern):
    with pytest.raises(InvalidArgument, match=pattern):
        registry.parse_config("distill.knowledge", config)
