"""Distillation losses and mixup, on torch tensors (torch is imported by the caller).

* `soft_target_loss`: Hinton et al. (2015): KL(softmax(t/T) || softmax(s/T)) * T^2, mean
  over the batch; the T^2 keeps its gradients on the scale of the hard loss.
* `kd_loss`: alpha * soft + (1 - alpha) * cross-entropy on the labels (when there are any).
* `embedding_loss`: 1 - cosine (mean over the batch) or mean squared error, for students of
  embedding models.
* `mixup`: x' = lam * x + (1 - lam) * x[perm] (Zhang et al., 2018); the teacher labels x'.
"""

from __future__ import annotations

from typing import Any, Literal


def soft_target_loss(student_logits: Any, teacher_logits: Any, temperature: float) -> Any:
    import torch.nn.functional as F

    t = float(temperature)
    log_p_student = F.log_softmax(student_logits / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / t, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * (t * t)


def kd_loss(
    student_logits: Any,
    teacher_logits: Any,
    labels: Any | None,
    temperature: float,
    alpha: float,
) -> Any:
    """alpha * soft_target_loss + (1 - alpha) * CE(labels); soft only without labels."""
    import torch.nn.functional as F

    soft = soft_target_loss(student_logits, teacher_logits, temperature)
    if labels is None or alpha >= 1.0:
        return soft
    hard = F.cross_entropy(student_logits, labels)
    return alpha * soft + (1.0 - alpha) * hard


def embedding_loss(student: Any, teacher: Any, kind: Literal["cosine", "mse"]) -> Any:
    import torch.nn.functional as F

    if kind == "cosine":
        return (1.0 - F.cosine_similarity(student, teacher, dim=-1)).mean()
    return F.mse_loss(student, teacher)


def mixup(inputs: list[Any], lam: float, perm: Any) -> list[Any]:
    """Every input mixed with the same permutation of the batch and the same `lam`."""
    return [lam * x + (1.0 - lam) * x[perm] for x in inputs]
