"""The Pareto front and the result built from trials, checked against brute force."""

from __future__ import annotations

import itertools
import random

import pytest

from service.search.frontier import (
    best_by_priority,
    closest,
    dominates,
    frontier_against,
    non_dominated,
)
from service.search.result import MIN_GAIN, build_result


def brute_force(points: list[tuple[float, ...]]) -> list[int]:
    return [
        i
        for i, p in enumerate(points)
        if not any(dominates(q, p) for j, q in enumerate(points) if j != i)
    ]


def test_dominance_is_strict_and_equal_points_do_not_dominate():
    assert dominates((1, 2), (1, 3)) and dominates((0, 0), (1, 1))
    assert not dominates((1, 2), (1, 2))
    assert not dominates((1, 3), (2, 2)) and not dominates((2, 2), (1, 3))
    with pytest.raises(ValueError):
        dominates((1,), (1, 2))


@pytest.mark.parametrize("seed", range(30))
def test_non_dominated_matches_brute_force(seed):
    rng = random.Random(seed)
    dims = rng.choice([2, 3, 4])
    # few distinct values: many ties and duplicates, the hard cases
    points = [tuple(rng.choice([0.0, 0.5, 1.0, 1.5]) for _ in range(dims)) for _ in range(40)]
    assert non_dominated(points) == brute_force(points)


def test_every_point_off_the_front_is_dominated_by_one_on_it():
    rng = random.Random(7)
    points = [(rng.random(), rng.random(), rng.random()) for _ in range(200)]
    front = set(non_dominated(points))
    for i, p in enumerate(points):
        if i not in front:
            assert any(dominates(points[k], p) for k in front)
    for a, b in itertools.combinations(front, 2):
        assert not dominates(points[a], points[b]) and not dominates(points[b], points[a])


def test_frontier_against_the_parent_drops_what_is_no_better_than_it():
    parent = (-0.97, 1.0, 1.0)
    margins = (float("inf"), MIN_GAIN, MIN_GAIN)
    points = [
        (-0.97, 0.98, 1.0),  # 2% faster: noise, not a gain
        (-0.99, 1.0, 1.0),  # better quality only: not a compression
        (-0.96, 0.5, 1.1),  # twice as fast, larger: a trade-off, kept
        (-0.96, 0.6, 1.2),  # dominated by the previous one
        (-0.95, 1.1, 1.1),  # dominated by the parent
        (-0.97, 1.0, 0.3),  # smaller: kept
    ]
    assert frontier_against(points, parent, margins) == [2, 5]


def test_best_by_priority_and_closest():
    points = [(-0.9, 0.5, 0.4), (-0.95, 0.5, 0.3), (-0.99, 0.7, 0.2)]
    assert best_by_priority(points, [0, 1, 2], [1, 2, 0]) == 1  # tie on 1, then 2
    assert best_by_priority(points, [0, 1, 2], [2, 1, 0]) == 2
    assert best_by_priority(points, [0, 2], [1, 2, 0]) == 0
    # within 5% of the best latency is a tie, which quality then decides
    noisy = [(-0.96, 0.715, 0.4), (-0.97, 0.718, 0.4), (-0.99, 0.9, 0.3)]
    assert best_by_priority(noisy, [0, 1, 2], [1, 2, 0]) == 0
    assert best_by_priority(noisy, [0, 1, 2], [1, 2, 0], (0.0, 0.05, 0.05)) == 1
    assert closest([0.5, 0.1, 0.1, 2.0]) == 1
    with pytest.raises(ValueError):
        closest([])


def record(number, quality, latency, size, feasible=True, **extra):
    parent = {"quality": 0.97, "latency_p50_ms": 1.0, "size_bytes": 1000}
    return {
        "number": number,
        "state": extra.pop("state", "COMPLETE"),
        "chain": "x",
        "quality_metric": "accuracy",
        "objectives": {"quality": quality, "latency_p50": latency, "size": size},
        "metrics": {"quality": quality, "quality_drop": 0.97 - quality},
        "parent": parent,
        "feasible": feasible,
        "violations": [] if feasible else ["size 2000 B > max_size_bytes 1500"],
        "excess": 0.0 if feasible else extra.pop("excess", 1.0),
        **extra,
    }


SPEC = {"objectives": ["latency_p50", "size"], "study": "pareto:m:job-1", "constraints": {}}
BUDGET = {"max_accuracy_drop": 0.01}


def test_result_marks_the_frontier_and_recommends_the_best_on_the_primary_objective():
    records = [
        record(0, 0.965, 0.9, 0.4),
        record(1, 0.970, 0.6, 0.5),  # fastest: recommended
        record(2, 0.960, 0.95, 0.3),  # smallest: frontier
        record(3, 0.960, 0.95, 0.3, duplicate_of=2),  # the same recipe again
        record(4, 0.960, 0.7, 0.6),  # dominated by 1
        record(5, 0.990, 0.1, 0.1, feasible=False),  # breaks a limit
        record(6, 0.0, 0.0, 0.0, state="PRUNED"),
    ]
    result = build_result(records, SPEC, BUDGET, {1: "var-1", 0: "var-0"})
    assert result["frontier"] == [1, 0, 2]
    assert result["recommended_trial"] == 1 and result["recommended_variant"] == "var-1"
    assert "closest_trial" not in result
    standing = {t["number"]: t["standing"] for t in result["trials"]}
    assert standing == {
        0: "frontier",
        1: "recommended",
        2: "frontier",
        3: "same recipe as trial 2",
        4: "dominated by trial 1",
        5: "infeasible",
        6: "",
    }
    assert result["trials"][0]["variant_id"] == "var-0"
    assert result["message"].startswith("7 trials (6 complete, 1 pruned); frontier of 3")


def test_result_without_a_feasible_trial_names_the_closest():
    records = [
        record(0, 0.9, 0.5, 0.5, feasible=False, excess=0.8),
        record(1, 0.9, 0.5, 0.5, feasible=False, excess=0.2),
        record(2, 0.0, 0.0, 0.0, state="FAILED"),
    ]
    spec = {**SPEC, "constraints": {"max_size_bytes": 1500}}
    result = build_result(records, spec, BUDGET, {})
    assert result["frontier"] == [] and "recommended_trial" not in result
    assert result["closest_trial"] == 1
    assert (
        "no trial met the limits (max_accuracy_drop 0.01, max_size_bytes 1500)"
        in (result["message"])
    )
    assert "closest: trial 1" in result["message"]


def test_result_when_nothing_ran_or_nothing_gained():
    assert "no trial produced" in build_result([], SPEC, BUDGET, {})["message"]
    same = build_result([record(0, 0.97, 0.99, 1.0)], SPEC, BUDGET, {})
    assert same["frontier"] == [] and "closest_trial" not in same
    assert "improved on the parent" in same["message"]
    assert same["trials"][0]["standing"].startswith("less than 5%")
