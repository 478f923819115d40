"""CreateJob checks shared by the training techniques: datasets, labels, model references."""

from __future__ import annotations

from compressors.base import ROLE_TRAINING, JobInfo, ModelInfo
from pareto_core.errors import FailedPrecondition, InvalidArgument
from pareto_core.formats import FORMAT_TORCH_EXPORT
from pareto_core.tensors import TensorSpec


def require_training_set(job: JobInfo, technique: str, labels_why: str = "") -> tuple[str, bool]:
    """(name, has_labels) of the job's training dataset; InvalidArgument when it is missing
    or, with `labels_why`, has no labels."""
    if ROLE_TRAINING not in job.datasets:
        raise InvalidArgument(
            f"datasets: {technique} needs a 'training' dataset; pass datasets={{'training': NAME}}"
        )
    name, has_labels = job.datasets[ROLE_TRAINING]
    if labels_why and not has_labels:
        raise InvalidArgument(
            f"datasets['training']: dataset {name!r} has no 'labels' array, but {technique} "
            f"needs labels ({labels_why})"
        )
    return name, has_labels


def _shape(spec: TensorSpec) -> str:
    return (
        "["
        + ",".join("batch" if i == 0 and d < 0 else str(d) for i, d in enumerate(spec.shape))
        + "]"
    )


def _compatible(a: TensorSpec, b: TensorSpec) -> bool:
    if len(a.shape) != len(b.shape) or a.datatype != b.datatype:
        return False
    return all(x < 0 or y < 0 or x == y for x, y in zip(a.shape[1:], b.shape[1:], strict=True))


def check_student(teacher: ModelInfo, student: ModelInfo, where: str) -> None:
    """A named student must be a .pt2 taking the teacher's inputs, with a matching output."""
    if student.format != FORMAT_TORCH_EXPORT:
        raise FailedPrecondition(
            f"{where}.student: model {student.name!r} is {student.format!r}; a student must be "
            "a torch.export archive (.pt2) to be trained, or leave student empty to derive "
            "one from the teacher"
        )
    names = ([t.name for t in teacher.signature.inputs], [t.name for t in student.signature.inputs])
    if names[0] != names[1]:
        raise FailedPrecondition(
            f"{where}: teacher {teacher.name!r} takes inputs {names[0]}, student "
            f"{student.name!r} takes {names[1]}; they must take the same inputs"
        )
    t_out, s_out = teacher.signature.outputs[0], student.signature.outputs[0]
    if not _compatible(t_out, s_out):
        raise FailedPrecondition(
            f"{where}: teacher {teacher.name!r} and student {student.name!r} have incompatible "
            f"outputs: teacher {t_out.name!r} is {t_out.datatype}{_shape(t_out)}, student "
            f"{s_out.name!r} is {s_out.datatype}{_shape(s_out)}"
        )


def check_float_inputs(model: ModelInfo, where: str, field: str) -> None:
    ints = [t.name for t in model.signature.inputs if not t.datatype.startswith("FP")]
    if ints:
        raise InvalidArgument(
            f"{where}.{field}: mixup blends inputs, but {model.name!r} has non-float inputs {ints}"
        )
