"""Pareto dominance, the non-dominated set, and the rules picking one point of it.

Points are tuples of objective values, every one *minimized* (callers negate what they
maximize, such as quality). `a` dominates `b` when it is no worse on every objective and
strictly better on at least one; the frontier is the set of points nothing dominates.
Equal points do not dominate each other, so duplicates are all kept.
"""

from __future__ import annotations

from collections.abc import Sequence

Point = Sequence[float]


def dominates(a: Point, b: Point) -> bool:
    if len(a) != len(b):
        raise ValueError(f"points of different lengths: {len(a)} and {len(b)}")
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def non_dominated(points: Sequence[Point]) -> list[int]:
    """Indices of the points no other point dominates, in input order.

    Sorting by the objectives first means a point can only be dominated by one before it;
    O(n^2) in the worst case, which is nothing for the hundreds of trials a search runs.
    """
    order = sorted(range(len(points)), key=lambda i: tuple(points[i]))
    kept: list[int] = []
    for i in order:
        if not any(dominates(points[k], points[i]) for k in kept):
            kept.append(i)
    return sorted(kept)


def frontier_against(
    points: Sequence[Point], reference: Point, margins: Sequence[float]
) -> list[int]:
    """Non-dominated points among those the reference (the parent) does not dominate and
    that beat it by more than `margins[k]` on some objective k: a variant no better than
    its parent, or better only by measurement noise, is not worth keeping."""
    candidates = [
        i
        for i, p in enumerate(points)
        if not dominates(reference, p)
        and any(x < r - m for x, r, m in zip(p, reference, margins, strict=True))
    ]
    kept = non_dominated([points[i] for i in candidates])
    return [candidates[k] for k in kept]


def best_by_priority(
    points: Sequence[Point],
    indices: Sequence[int],
    order: Sequence[int],
    tolerances: Sequence[float] | None = None,
) -> int:
    """The index among `indices` whose point is smallest on objective order[0], then on
    order[1], ...; then the lowest index (the earliest trial). A point within
    `tolerances[k]` (relative to the best) of the best on objective k counts as tied on it:
    a 1% faster variant that is otherwise worse is noise, not a better choice."""
    if not indices:
        raise ValueError("no candidates")
    tied = list(indices)
    for k in order:
        best = min(points[i][k] for i in tied)
        slack = abs(best) * (tolerances[k] if tolerances else 0.0)
        tied = [i for i in tied if points[i][k] <= best + slack]
    return min(tied)


def closest(excesses: Sequence[float]) -> int:
    """The index with the smallest total relative excess over the limits."""
    if not excesses:
        raise ValueError("no candidates")
    return min(range(len(excesses)), key=lambda i: (excesses[i], i))
