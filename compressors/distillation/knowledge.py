"""distill.knowledge: train a smaller student to reproduce a teacher.

Teacher: the step's input (the job's model) or `teacher`, an uploaded model by name; it
runs in ONNX Runtime (a .pt2 teacher is exported to ONNX first) and labels the job's
"training" dataset, which may be unlabeled (a transfer set). Student: `student`, an uploaded
torch.export (.pt2) model, or derived from the step's input by scaling its channel widths
(see `compressors.distillation.student`). Losses: Hinton soft targets (temperature, alpha)
plus cross-entropy on labels when the dataset has them (`objective: logits`), or 1 - cosine
/ MSE on the output embedding (`objective: embedding`); optionally 1 - cosine per position
between an internal teacher tensor (`teacher_hidden`, e.g. its last hidden state, exposed
as an extra ONNX output) and the uploaded student's second output; optional mixup of float
inputs, labelled by the teacher on the fly. A seeded held-out part of the dataset is never trained
on: it scores every epoch (accuracy, or agreement/cosine with the teacher), drives early
stopping, and the best epoch is kept. Training checkpoints every epoch and resumes after a
restart. The result is the student as ONNX with the step input's input/output names.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from compressors.base import (
    ROLE_TRAINING,
    Artifact,
    JobInfo,
    StepContext,
    StepResult,
    Technique,
    TechniqueConfig,
)
from compressors.distillation import checks
from compressors.registry import register
from compressors.training.schedules import Schedule
from pareto_core.formats import FORMAT_ONNX, FORMAT_TORCH_EXPORT

NAME = "distill.knowledge"


class DistillConfig(TechniqueConfig):
    teacher: str = Field("", description="uploaded model name; empty = this step's input")
    student: str = Field("", description="uploaded .pt2 model; empty = derived from the input")
    width: float = Field(0.5, gt=0.0, le=1.0, description="derived student: channels kept")
    init: Literal["teacher", "random"] = "teacher"
    objective: Literal["logits", "embedding"] = "logits"
    temperature: float = Field(4.0, gt=0.0, le=100.0)
    alpha: float = Field(0.9, ge=0.0, le=1.0, description="soft-target weight; 1-alpha: labels")
    labels: Literal["auto", "required", "ignore"] = "auto"
    embedding_loss: Literal["cosine", "mse"] = "cosine"
    mixup: float = Field(0.0, ge=0.0, le=10.0, description="Beta(a, a) of mixup; 0 = off")
    teacher_hidden: str = Field(
        "",
        description="a teacher ONNX tensor (e.g. its last hidden state) that the uploaded "
        "student's second output learns, by 1 - cosine per position",
    )
    hidden_weight: float = Field(0.0, ge=0.0, le=100.0, description="weight of that loss")
    epochs: int = Field(10, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1, le=65_536)
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    schedule: Schedule = "cosine"
    warmup_steps: int = Field(0, ge=0, le=1_000_000)
    holdout_fraction: float = Field(0.1, ge=0.0, lt=0.9)
    patience: int = Field(0, ge=0, le=10_000, description="early stopping; 0 = off")
    max_samples: int = Field(0, ge=0, description="cap on training samples; 0 = all")

    @model_validator(mode="after")
    def _hidden_needs_its_parts(self) -> DistillConfig:
        if bool(self.teacher_hidden) != (self.hidden_weight > 0):
            raise ValueError("teacher_hidden and hidden_weight > 0 go together")
        if self.teacher_hidden and not self.student:
            raise ValueError("teacher_hidden needs an uploaded student whose 2nd output matches it")
        if self.teacher_hidden and self.mixup:
            raise ValueError("teacher_hidden and mixup cannot be combined")
        return self


def labels_needed(config: DistillConfig) -> str:
    """Why this config needs labels ('' when it does not)."""
    if config.labels == "required":
        return "config.labels is 'required'"
    if config.objective == "logits" and config.alpha == 0.0 and config.labels != "ignore":
        return "alpha 0 trains on the labels alone"
    return ""


@register
class DistillKnowledge(Technique):
    name = NAME
    config_cls = DistillConfig
    input_formats = frozenset({FORMAT_ONNX, FORMAT_TORCH_EXPORT})
    description = "Knowledge distillation into a smaller student (derived or uploaded .pt2)."

    def check_job(self, config: DistillConfig, job: JobInfo, where: str) -> None:
        checks.require_training_set(job, NAME, labels_needed(config))
        teacher = job.find_model(config.teacher) if config.teacher else job.model
        if config.student:
            student = job.find_model(config.student)
            checks.check_student(teacher, student, where)
            if config.teacher_hidden and len(student.signature.outputs) < 2:
                from pareto_core.errors import FailedPrecondition

                raise FailedPrecondition(
                    f"{where}.teacher_hidden: student {student.name!r} has one output; it needs "
                    "a second one to learn the teacher's hidden state"
                )
        if config.mixup:
            checks.check_float_inputs(teacher, where, "mixup")

    def apply(self, artifact: Artifact, config: DistillConfig, ctx: StepContext) -> StepResult:
        from compressors.distillation.run import distill

        dataset = ctx.dataset(ROLE_TRAINING, NAME)
        if (why := labels_needed(config)) and dataset.labels is None:
            from pareto_core.errors import InvalidArgument

            raise InvalidArgument(
                f"dataset {dataset.name!r} has no labels; {NAME} needs them ({why})"
            )
        teacher = ctx.model(config.teacher, NAME) if config.teacher else artifact
        student = ctx.model(config.student, NAME) if config.student else None
        return distill(artifact, teacher, student, dataset, config, ctx)


def fingerprint(config: DistillConfig, extra: dict[str, Any]) -> str:
    import json

    return json.dumps(
        {"technique": NAME, **config.model_dump(mode="json"), **extra}, sort_keys=True
    )
