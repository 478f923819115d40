"""Comparing two search frontiers: the hypervolume each dominates and how many of one's
points the other dominates.

Points are (accuracy drop in points, latency ratio, size ratio), all minimized, each
measured against the parent in its own trial. The hypervolume is the volume between the
frontier and a reference point shared by the compared frontiers (their worst value on
each axis, plus a margin), computed exactly on the grid of the points' coordinates (a
frontier has tens of points at most).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

Point = tuple[float, ...]
MARGIN = 0.1  # the reference point lies this far (relative) beyond the worst values


def dominates(a: Point, b: Point) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


def reference(*fronts: Sequence[Point]) -> Point:
    points = [p for front in fronts for p in front]
    worst = [max(axis) for axis in zip(*points, strict=True)]
    return tuple(w + MARGIN * max(abs(w), 1e-3) for w in worst)


def hypervolume(front: Sequence[Point], ref: Point) -> float:
    """The volume of the union of the boxes [p, ref] over the front's points."""
    points = [p for p in front if all(x < r for x, r in zip(p, ref, strict=True))]
    if not points:
        return 0.0
    axes = [sorted({p[k] for p in points} | {ref[k]}) for k in range(len(ref))]
    volume = 0.0
    for cell in product(*(range(len(axis) - 1) for axis in axes)):
        corner = [axes[k][i] for k, i in enumerate(cell)]
        if any(all(x <= c for x, c in zip(p, corner, strict=True)) for p in points):
            size = 1.0
            for k, i in enumerate(cell):
                size *= axes[k][i + 1] - axes[k][i]
            volume += size
    return volume


def dominated_count(front: Sequence[Point], by: Sequence[Point]) -> int:
    """How many points of `front` some point of `by` dominates."""
    return sum(any(dominates(q, p) for q in by) for p in front)
