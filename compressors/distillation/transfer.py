"""The transfer set of a distillation: inputs split into training and held-out parts, the
teacher's outputs on them (ONNX Runtime), and the held-out score of a student."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compressors.base import Dataset
from compressors.graph.run import feeds_for, outputs_of
from pareto_core.errors import FailedPrecondition
from pareto_core.tensors import Signature

TEACHER_BATCH = 64
SCORE_BATCH = 256


@dataclass(frozen=True)
class Split:
    inputs: list[np.ndarray]  # in signature order
    labels: np.ndarray | None
    targets: np.ndarray  # the teacher's first output
    hidden: np.ndarray | None = None  # the teacher tensor the student's 2nd output learns


@dataclass(frozen=True)
class TransferSet:
    train: Split
    heldout: Split | None


def split_indices(n: int, fraction: float, seed: int, limit: int = 0) -> tuple[Any, Any]:
    """(train, heldout) sample indices: a seeded permutation; heldout gets `fraction` (at
    least 1 sample when fraction > 0 and n >= 2); `limit` > 0 caps the training part."""
    order = np.random.default_rng(seed).permutation(n)
    k = min(n - 1, max(1, round(n * fraction))) if fraction > 0 and n >= 2 else 0
    train = order[k:]
    return (train[:limit] if limit else train), order[:k]


def teacher_outputs(
    path: Path, signature: Signature, feeds: dict[str, np.ndarray], threads: int
) -> np.ndarray:
    output = signature.outputs[0].name
    return outputs_of(path, feeds, output, threads, TEACHER_BATCH).astype(np.float32)


def build_transfer_set(
    dataset: Dataset,
    teacher: Path,
    signature: Signature,
    *,
    holdout_fraction: float,
    max_samples: int,
    use_labels: bool,
    seed: int,
    threads: int,
    work_dir: Path,
    teacher_hidden: str = "",
) -> TransferSet:
    feeds = feeds_for(signature, dataset.inputs, dataset.num_samples, "training")
    labels = dataset.labels if use_labels else None
    train_idx, held_idx = split_indices(dataset.num_samples, holdout_fraction, seed, max_samples)

    def part(idx: np.ndarray) -> Split:
        chosen = {name: np.ascontiguousarray(a[idx]) for name, a in feeds.items()}
        targets = teacher_outputs(teacher, signature, chosen, threads)
        ys = np.asarray(labels)[idx].astype(np.int64) if labels is not None else None
        hidden = None
        if teacher_hidden:
            hidden = outputs_of(exposed, chosen, teacher_hidden, threads, TEACHER_BATCH)
        return Split([chosen[t.name] for t in signature.inputs], ys, targets, hidden)

    exposed = teacher
    if teacher_hidden:
        exposed = _with_output(teacher, teacher_hidden, work_dir)

    return TransferSet(part(train_idx), part(held_idx) if len(held_idx) else None)


def _with_output(path: Path, tensor: str, out_dir: Path) -> Path:
    """A copy of the teacher in `out_dir` with internal tensor `tensor` as an extra output."""
    import onnx

    model = onnx.load(str(path))
    produced = {o for node in model.graph.node for o in node.output}
    if tensor not in produced:
        raise FailedPrecondition(
            f"config.teacher_hidden: the teacher has no tensor {tensor!r} (it is an internal "
            "tensor name of the teacher's ONNX graph, e.g. a layer's output)"
        )
    model.graph.output.append(onnx.helper.make_tensor_value_info(tensor, 1, None))
    out = out_dir / "teacher_hidden.onnx"
    onnx.save(model, str(out))
    return out


def first_output(out: Any) -> Any:
    return out[0] if isinstance(out, list | tuple) else out


def student_outputs(module: Any, inputs: list[np.ndarray]) -> Any:
    import torch

    tensors = [torch.from_numpy(a) for a in inputs]
    parts = []
    with torch.no_grad():
        for start in range(0, len(tensors[0]), SCORE_BATCH):
            parts.append(first_output(module(*[t[start : start + SCORE_BATCH] for t in tensors])))
    return torch.cat(parts)


def heldout_score(module: Any, split: Split, objective: str) -> float:
    """Accuracy on labels, else top-1 agreement with the teacher (logits); mean cosine to
    the teacher (embeddings)."""
    import torch

    out = student_outputs(module, split.inputs)
    teacher = torch.from_numpy(split.targets)
    if objective == "embedding":
        return float(torch.nn.functional.cosine_similarity(out, teacher, dim=-1).mean())
    reference = torch.from_numpy(split.labels) if split.labels is not None else teacher.argmax(-1)
    return float((out.argmax(-1) == reference).float().mean())


def check_output_shapes(student_out: Any, targets: np.ndarray, what: str) -> None:
    """FailedPrecondition naming both shapes when the student cannot learn the targets."""
    got, want = tuple(student_out.shape[1:]), tuple(targets.shape[1:])
    if got != want:
        raise FailedPrecondition(
            f"teacher and student have incompatible outputs: the teacher's is "
            f"[batch,{','.join(map(str, want))}], the student's ({what}) is "
            f"[batch,{','.join(map(str, got))}]"
        )
