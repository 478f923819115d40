"""The one training loop: distillation, QAT, gradual pruning and fine-tuning all use it.

`fit` trains a torch module in place on minibatches of numpy arrays with Adam, a learning
rate schedule (`compressors.schedules`), a technique-supplied loss, optional held-out
scoring with early stopping (the best epoch's weights are kept), cancellation checks
between batches, progress events (epoch, step, loss, held-out score), and a checkpoint at
the end of every epoch from which a restarted job resumes. Importing it does not import
torch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from compressors.base import ProgressFn
from compressors.training.checkpoint import Checkpoint
from compressors.training.schedules import Schedule, lr_factor
from pareto_core.errors import Cancelled

# (module, input tensors, label tensor or None, sample indices) -> scalar loss tensor
LossFn = Callable[[Any, list[Any], Any, Any], Any]
ScoreFn = Callable[[Any], float]  # held-out quality of the module, higher is better


@dataclass(frozen=True)
class TrainPlan:
    epochs: int
    lr: float
    batch_size: int
    schedule: Schedule = "constant"
    warmup_steps: int = 0
    patience: int = 0  # epochs without a better held-out score before stopping; 0 = never
    seed: int = 0
    keep_best: bool = True  # end with the best held-out epoch's weights


@dataclass
class _State:
    epoch: int = 0  # epochs done
    best_score: float = -math.inf
    best_model: dict[str, Any] | None = None
    bad_epochs: int = 0
    losses: list[float] | None = None
    scores: list[float] | None = None
    resumed_from_epoch: int = 0


def fit(
    module: Any,
    arrays: list[np.ndarray],
    labels: np.ndarray | None,
    plan: TrainPlan,
    loss_fn: LossFn,
    *,
    score_fn: ScoreFn | None = None,
    checkpoint: Checkpoint | None = None,
    progress: ProgressFn = lambda fraction, message, metrics: None,
    is_cancelled: Callable[[], bool] = lambda: False,
    after_step: Callable[[int], None] | None = None,
    activity: str = "training",
    step_progress: bool = True,
) -> dict[str, Any]:
    """Train `module`; returns a JSON report (losses and scores per epoch, best epoch, ...).
    `activity` names what is trained in messages ("prune.structured fine-tuning");
    `step_progress` False reports progress at the end of each epoch only."""
    import torch

    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    targets = torch.from_numpy(labels.astype(np.int64)) if labels is not None else None
    n = len(tensors[0])
    steps_per_epoch = max(1, math.ceil(n / plan.batch_size))
    total = steps_per_epoch * plan.epochs
    torch.manual_seed(plan.seed)
    generator = torch.Generator().manual_seed(plan.seed)
    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=plan.lr)
    state = _resume(module, optimizer, generator, checkpoint)
    module.train()
    while state.epoch < plan.epochs and not _stopped(state, plan):
        epoch = state.epoch + 1
        total_loss, step = 0.0, (epoch - 1) * steps_per_epoch
        for idx in torch.randperm(n, generator=generator).split(plan.batch_size):
            if is_cancelled():
                raise Cancelled(f"cancelled during {activity} epoch {epoch}")
            for group in optimizer.param_groups:
                group["lr"] = plan.lr * lr_factor(step, total, plan.schedule, plan.warmup_steps)
            optimizer.zero_grad()
            batch_labels = targets[idx] if targets is not None else None
            loss = loss_fn(module, [t[idx] for t in tensors], batch_labels, idx)
            loss.backward()
            optimizer.step()
            step += 1
            if after_step is not None:
                after_step(step)
            total_loss += float(loss.detach()) * len(idx)
            metrics = {"epoch": float(epoch), "step": float(step), "loss": float(loss.detach())}
            if state.scores:  # the last epoch's, so that any event that gets through has it
                metrics["heldout"] = state.scores[-1]
            if step_progress:
                message = f"epoch {epoch}/{plan.epochs} step {step}/{total}"
                progress(step / total, message, metrics)
        _end_epoch(module, state, total_loss / n, score_fn)
        metrics = {"epoch": float(epoch), "step": float(step), "loss": state.losses[-1]}
        if state.scores:
            metrics["heldout"] = state.scores[-1]
        progress(epoch / plan.epochs, f"epoch {epoch}/{plan.epochs} done", metrics)
        if checkpoint is not None:
            checkpoint.save(_snapshot(module, optimizer, generator, state))
    if state.best_model is not None and plan.keep_best:
        module.load_state_dict(state.best_model)
    module.eval()
    return _report(state, plan)


def _stopped(state: _State, plan: TrainPlan) -> bool:
    return plan.patience > 0 and state.bad_epochs >= plan.patience


def _end_epoch(module: Any, state: _State, loss: float, score_fn: ScoreFn | None) -> None:
    import torch

    state.epoch += 1
    state.losses = [*(state.losses or []), loss]
    if score_fn is None:
        return
    module.eval()
    with torch.no_grad():
        score = float(score_fn(module))
    module.train()
    state.scores = [*(state.scores or []), score]
    if score > state.best_score:
        state.best_score, state.bad_epochs = score, 0
        state.best_model = copy.deepcopy(module.state_dict())
    else:
        state.bad_epochs += 1


def _snapshot(module: Any, optimizer: Any, generator: Any, state: _State) -> dict[str, Any]:
    return {
        "model": module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "epoch": state.epoch,
        "best_score": state.best_score,
        "best_model": state.best_model or {},
        "bad_epochs": state.bad_epochs,
        "losses": state.losses or [],
        "scores": state.scores or [],
    }


def _resume(module: Any, optimizer: Any, generator: Any, checkpoint: Checkpoint | None) -> _State:
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is None:
        return _State(losses=[], scores=[])
    module.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    generator.set_state(saved["generator"])
    return _State(
        epoch=int(saved["epoch"]),
        best_score=float(saved["best_score"]),
        best_model=saved["best_model"] or None,
        bad_epochs=int(saved["bad_epochs"]),
        losses=list(saved["losses"]),
        scores=list(saved["scores"]),
        resumed_from_epoch=int(saved["epoch"]),
    )


def _report(state: _State, plan: TrainPlan) -> dict[str, Any]:
    scores = state.scores or []
    best = int(np.argmax(scores)) + 1 if scores else None
    return {
        "epochs_planned": plan.epochs,
        "epochs_run": state.epoch,
        "early_stopped": state.epoch < plan.epochs,
        "resumed_from_epoch": state.resumed_from_epoch,
        "loss_per_epoch": [round(x, 6) for x in state.losses or []],
        "heldout_per_epoch": [round(x, 6) for x in scores],
        "best_epoch": best,
        "best_heldout": round(max(scores), 6) if scores else None,
    }
