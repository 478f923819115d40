"""Recovery of a pruned transformer by distillation from its unpruned parent (torch, CPU).

The student (pruned) learns the teacher's (parent's) task output (sentence embedding,
last hidden state or logits) and the hidden state after every encoder layer (pruning
keeps the number of layers and the hidden size, so layer i teaches layer i). Each term is
a mean squared error over real tokens, divided by the teacher's mean square so that the
terms weigh alike whatever their scale:

    loss = mse(out) / ms(out_teacher) + hidden_weight * mean_i mse(h_i) / ms(h_i_teacher)

AdamW with a linear warm-up (10%) and linear decay, batches cut to their longest real
sequence. Importing this module does not import torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from compressors.pruning.transformer_model import layers

Progress = Callable[[int, float], None]


@contextlib.contextmanager
def _hidden_states(module: Any, into: list[Any]) -> Iterator[None]:
    """Append the output hidden state of every encoder layer of `module` to `into`."""

    def hook(_m: Any, _i: Any, output: Any) -> None:
        into.append(output[0] if isinstance(output, tuple) else output)

    hooks = [layer.module.register_forward_hook(hook) for layer in layers(module)]
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


def _normalized_mse(student: Any, teacher: Any, mask: Any) -> Any:
    if student.dim() == 3:  # token-level: real tokens only
        real = mask.unsqueeze(-1).to(student.dtype)
        tokens = real.sum().clamp(min=1.0) * student.shape[-1]
        mse = (((student - teacher) ** 2) * real).sum() / tokens
        ms = ((teacher**2) * real).sum() / tokens
    else:
        mse = ((student - teacher) ** 2).mean()
        ms = (teacher**2).mean()
    return mse / ms.clamp(min=1e-12)


def _run(module: Any, ids: Any, mask: Any) -> tuple[Any, list[Any]]:
    hidden: list[Any] = []
    with _hidden_states(module, hidden):
        out = module(ids, mask)
    return out, hidden


def batches(
    inputs: dict[str, np.ndarray], batch_size: int, steps: int, seed: int
) -> Iterator[tuple[Any, Any]]:
    """`steps` shuffled (input_ids, attention_mask) batches, cut to their longest row."""
    import torch

    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    rng = np.random.default_rng(seed)
    order: list[int] = []
    for _ in range(steps):
        if len(order) < batch_size:
            order.extend(rng.permutation(len(ids)).tolist())
        pick, order = order[:batch_size], order[batch_size:]
        yield _cut(torch.from_numpy(ids[pick]), torch.from_numpy(mask[pick]))


def _cut(ids: Any, mask: Any) -> tuple[Any, Any]:
    length = max(1, int(mask.sum(dim=1).max()))
    return ids[:, :length].long(), mask[:, :length].long()


def distill(
    student: Any,
    teacher: Any,
    inputs: dict[str, np.ndarray],
    *,
    steps: int,
    batch_size: int = 16,
    lr: float = 1e-4,
    hidden_weight: float = 1.0,
    seed: int = 0,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """Train `student` towards `teacher` for `steps` steps; returns the loss curve ends."""
    import torch

    torch.manual_seed(seed)
    teacher.eval()
    student.train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)
    warm = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm)))
    )
    losses: list[float] = []
    for step, (ids, mask) in enumerate(batches(inputs, batch_size, steps, seed)):
        if cancelled():
            break
        with torch.no_grad():
            t_out, t_hidden = _run(teacher, ids, mask)
        s_out, s_hidden = _run(student, ids, mask)
        hidden = torch.stack(
            [_normalized_mse(s, t, mask) for s, t in zip(s_hidden, t_hidden, strict=True)]
        ).mean()
        loss = _normalized_mse(s_out, t_out, mask) + hidden_weight * hidden
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, losses[-1])
    student.eval()
    head = losses[: max(1, len(losses) // 10)]
    tail = losses[-max(1, len(losses) // 10) :]
    return {
        "steps": len(losses),
        "loss_first": float(np.mean(head)) if losses else None,
        "loss_last": float(np.mean(tail)) if losses else None,
    }
