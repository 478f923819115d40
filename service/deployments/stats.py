"""In-process counters of one deployment target: what reports and canary checks read.

Requests and errors are counted; latencies of successful requests are kept in a ring of
the last `window` samples; comparisons (shadow copies, canary checks) are summed. A `Mark`
taken at some moment lets a canary step read only what happened since.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Mark:
    requests: int = 0
    errors: int = 0
    latencies: int = 0
    comparisons: int = 0
    top1_sum: float = 0.0
    cosine_sum: float = 0.0


@dataclass(frozen=True)
class Window:
    """What happened to a target since a mark (latencies: at most the ring's size)."""

    requests: int
    errors: int
    latencies_s: np.ndarray
    comparisons: int
    top1: float  # mean over comparisons (nan when none)
    cosine: float
    max_abs_diff: float  # over the target's whole life
    dropped: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def agreement(self, measure: str) -> float:
        return self.top1 if measure == "top1" else self.cosine


class TargetStats:
    def __init__(self, window: int = 4096) -> None:
        self._lock = threading.Lock()
        self._ring = np.zeros(window, dtype=np.float64)
        self._mark = Mark()
        self._max_abs_diff = 0.0
        self._dropped = 0

    def record(self, seconds: float, ok: bool) -> None:
        with self._lock:
            m = self._mark
            if ok:
                self._ring[m.latencies % len(self._ring)] = seconds
            self._mark = Mark(
                m.requests + 1,
                m.errors + (not ok),
                m.latencies + ok,
                m.comparisons,
                m.top1_sum,
                m.cosine_sum,
            )

    def record_comparison(self, top1: float, cosine: float, max_abs_diff: float) -> None:
        with self._lock:
            m = self._mark
            self._mark = Mark(
                m.requests,
                m.errors,
                m.latencies,
                m.comparisons + 1,
                m.top1_sum + top1,
                m.cosine_sum + cosine,
            )
            self._max_abs_diff = max(self._max_abs_diff, max_abs_diff)

    def record_drop(self) -> None:
        with self._lock:
            self._dropped += 1

    def mark(self) -> Mark:
        return self._mark  # immutable: read without the lock

    def window(self, since: Mark | None = None) -> Window:
        since = since or Mark()
        with self._lock:
            now = self._mark
            n = min(now.latencies - since.latencies, len(self._ring))
            order = (now.latencies - n + np.arange(n)) % len(self._ring)
            latencies = self._ring[order].copy()
            max_abs, dropped = self._max_abs_diff, self._dropped
        comparisons = now.comparisons - since.comparisons
        mean = (lambda total: total / comparisons) if comparisons else (lambda _: float("nan"))
        return Window(
            requests=now.requests - since.requests,
            errors=now.errors - since.errors,
            latencies_s=latencies,
            comparisons=comparisons,
            top1=mean(now.top1_sum - since.top1_sum),
            cosine=mean(now.cosine_sum - since.cosine_sum),
            max_abs_diff=max_abs,
            dropped=dropped,
        )
