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

from compressors.base import (
    ROLE_TRAINING,
    Artifact,
    JobInfo,
    StepContext,
    StepResult,
    Technique,
)
from compressors.distillation import checks
from compressors.distillation.config import NAME, DistillConfig, labels_needed
from compressors.registry import register
from pareto_core.formats import FORMAT_ONNX, FORMAT_TORCH_EXPORT


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
