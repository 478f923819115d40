"""Supervised fine-tuning of classifiers, on the one training loop (`training.loop.fit`).

Cross-entropy on the integer class labels of a dataset, checked first (`labeled_arrays`).
`after_step` runs after every optimizer step: magnitude pruning uses it to keep pruned
weights at zero. Importing this module does not import torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pydantic import Field

from compressors.base import ROLE_TRAINING, Dataset, ProgressFn, StepContext, TechniqueConfig
from compressors.training.loop import TrainPlan, fit
from pareto_core.errors import FailedPrecondition, InvalidArgument


class FinetuneFields(TechniqueConfig):
    """Fine-tuning options of a technique config; 0 epochs = no fine-tuning."""

    finetune_epochs: int = Field(0, ge=0, le=1000)
    finetune_lr: float = Field(1e-3, gt=0.0, le=1.0)
    finetune_batch_size: int = Field(64, ge=1, le=65536)


def labeled_arrays(
    dataset: Dataset, input_names: Sequence[str], technique: str
) -> tuple[list[np.ndarray], np.ndarray]:
    """The dataset's inputs in `input_names` order and its labels, checked."""
    if dataset.labels is None:
        raise FailedPrecondition(
            f"{technique} fine-tuning needs labels: dataset {dataset.name!r} has no 'labels' array"
        )
    missing = [name for name in input_names if name not in dataset.inputs]
    if missing:
        raise InvalidArgument(f"dataset {dataset.name!r} has no input array {missing}")
    labels = np.asarray(dataset.labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise InvalidArgument(
            f"dataset {dataset.name!r} labels: expected 1-D integer class ids, "
            f"got {labels.dtype} shaped {list(labels.shape)}"
        )
    if len(labels) != dataset.num_samples or labels.min(initial=0) < 0:
        raise InvalidArgument(
            f"dataset {dataset.name!r} labels: expected {dataset.num_samples} non-negative "
            f"class ids, got {len(labels)} (min {labels.min(initial=0)})"
        )
    return [np.asarray(dataset.inputs[name]) for name in input_names], labels


def _logits(module: Any, batch: list[Any], labels: Any, dataset: str) -> Any:
    out = module(*batch)
    logits = out[0] if isinstance(out, list | tuple) else out
    if logits.ndim != 2:
        raise FailedPrecondition(
            f"fine-tuning needs a classifier: the first output is shaped "
            f"{list(logits.shape)}, expected [batch, classes]"
        )
    if int(labels.max()) >= logits.shape[1]:
        raise InvalidArgument(
            f"dataset {dataset!r} labels: class id {int(labels.max())} is out of range "
            f"for a model with {logits.shape[1]} classes"
        )
    return logits


def train(
    module: Any,
    dataset: Dataset,
    *,
    input_names: Sequence[str],
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    threads: int | None = None,
    progress: ProgressFn | None = None,
    is_cancelled: Callable[[], bool] = lambda: False,
    after_step: Callable[[], None] | None = None,
    technique: str = "fine-tuning",
) -> dict[str, Any]:
    """Train `module` in place on `dataset` with cross-entropy (`compressors.training.loop`);
    returns {"epochs", "first_loss", "loss"} (mean loss of the first and last epoch).
    `threads` None keeps torch's current thread count."""
    import torch

    from compressors.training.torch_bridge import torch_threads

    arrays, labels = labeled_arrays(dataset, input_names, technique)

    def loss_fn(module: Any, batch: list[Any], targets: Any, indices: Any) -> Any:
        logits = _logits(module, batch, targets, dataset.name)
        return torch.nn.functional.cross_entropy(logits, targets)

    epoch_losses: list[float] = []

    def epoch_done(fraction: float, message: str, metrics: dict[str, float]) -> None:
        epoch_losses.append(metrics["loss"])
        if progress is not None:
            progress(fraction, f"{technique} {message}", metrics)

    plan = TrainPlan(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    with torch_threads(threads) if threads else contextlib.nullcontext():
        report = fit(
            module,
            arrays,
            labels,
            plan,
            loss_fn,
            progress=epoch_done,
            is_cancelled=is_cancelled,
            after_step=(lambda step: after_step()) if after_step is not None else None,
            activity=f"{technique} fine-tuning" if technique != "fine-tuning" else technique,
            step_progress=False,
        )
    return {
        "epochs": report["epochs_run"],
        "first_loss": epoch_losses[0] if epoch_losses else None,
        "loss": epoch_losses[-1] if epoch_losses else None,
    }


def finetune_in_step(
    module: Any,
    config: FinetuneFields,
    ctx: StepContext,
    technique: str,
    input_names: Sequence[str],
    after_step: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """`train` with a step's config and context; progress maps to 10%..90% of the step."""

    def progress(fraction: float, message: str, metrics: dict[str, float]) -> None:
        ctx.progress(0.1 + 0.8 * fraction, message, metrics)

    return train(
        module,
        ctx.dataset(ROLE_TRAINING, technique),
        input_names=input_names,
        epochs=config.finetune_epochs,
        lr=config.finetune_lr,
        batch_size=config.finetune_batch_size,
        seed=ctx.seed,
        progress=progress,
        threads=ctx.threads,
        is_cancelled=ctx.is_cancelled,
        after_step=after_step,
        technique=technique,
    )
