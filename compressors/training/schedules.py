"""Schedules of training techniques, as plain functions of the step (no torch).

* `lr_factor`: the learning-rate multiplier of step t of T: constant, linear decay to 0, or
  half-cosine decay to 0 (SGDR without restarts), after an optional linear warm-up.
* `polynomial_sparsity`: Zhu & Gupta (2017), "To prune, or not to prune": the sparsity at
  step t rises from s_i to s_f between steps t0 and t0 + n as
  s_t = s_f + (s_i - s_f) * (1 - (t - t0) / n) ** power   (power 3 in the paper).
"""

from __future__ import annotations

import math
from typing import Literal

Schedule = Literal["constant", "linear", "cosine"]


def lr_factor(step: int, total: int, schedule: Schedule, warmup: int = 0) -> float:
    """Multiplier of the base learning rate at `step` (0-based) of `total` steps."""
    if total <= 0:
        return 1.0
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r}")


def polynomial_sparsity(
    step: int, begin: int, end: int, initial: float, final: float, power: float = 3.0
) -> float:
    """Target sparsity at `step`: `initial` before `begin`, `final` from `end` on."""
    if step <= begin:
        return initial
    if step >= end:
        return final
    remaining = 1.0 - (step - begin) / (end - begin)
    return final + (initial - final) * remaining**power
