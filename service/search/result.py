"""A search's result from its trials: the frontier, the recommended trial, the closest one.

Trials come as plain records (`study.trial_record`: Optuna's trial with its user attrs);
the result is a dict shaped like pareto.v1.SearchResult (without the job's state), stored
beside the job and served by GetSearch. Pure functions, no Optuna.

* **Frontier**: complete, feasible trials (every constraint met) that no other such trial,
  nor the parent, dominates on (quality, objective ratios), and that are at least
  `MIN_GAIN` (5%) smaller or faster than the parent on some objective. A trial repeating
  an earlier recipe reuses its measurement and is not counted twice.
* **Recommended**: the frontier trial best on the primary objective (the first of the
  spec's), ties broken by the next objectives in order, then by quality, then the
  earliest trial. Within `MIN_GAIN` (5%) of the best on an objective counts as a tie:
  a variant 1% faster but less accurate loses to the more accurate one.
* **Closest** (only when no trial is feasible): the complete trial with the smallest sum
  of relative excesses over the limits it breaks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from service.search.frontier import best_by_priority, closest, dominates, frontier_against

COMPLETE = "COMPLETE"
# A kept variant is at least this much (as a ratio) smaller or faster than its parent on
# some objective: less is within the noise of a latency measurement.
MIN_GAIN = 0.05


def vector(record: Mapping[str, Any], objectives: Sequence[str]) -> tuple[float, ...]:
    """The trial's objectives, all minimized: -quality, then the ratios."""
    values = record["objectives"]
    return (-float(values["quality"]), *(float(values[o]) for o in objectives))


def _candidates(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in records if r["state"] == COMPLETE and r.get("duplicate_of") is None]


def _parent(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return next((dict(r["parent"]) for r in _candidates(records) if r.get("parent")), {})


def frontier_numbers(records: Sequence[Mapping[str, Any]], objectives: Sequence[str]) -> list[int]:
    """Frontier trial numbers, the recommended one first, then by the primary objective."""
    feasible = [r for r in _candidates(records) if r.get("feasible")]
    if not feasible:
        return []
    points = [vector(r, objectives) for r in feasible]
    reference = (-float(feasible[0]["parent"]["quality"]), *([1.0] * len(objectives)))
    margins = (math.inf, *([MIN_GAIN] * len(objectives)))
    kept = frontier_against(points, reference, margins)
    order = [*range(1, len(objectives) + 1), 0]
    ranked = sorted(kept, key=lambda i: (*(points[i][k] for k in order), i))
    if ranked:
        tolerances = (0.0, *([MIN_GAIN] * len(objectives)))
        best = best_by_priority(points, kept, order, tolerances)
        ranked.remove(best)
        ranked.insert(0, best)
    return [int(feasible[i]["number"]) for i in ranked]


def standing(
    record: Mapping[str, Any],
    frontier: Sequence[int],
    records: Sequence[Mapping[str, Any]],
    objectives: Sequence[str],
) -> str:
    """Why a complete trial is or is not on the frontier (see pareto.v1.SearchTrial)."""
    if record["state"] != COMPLETE:
        return ""
    if record.get("duplicate_of") is not None:
        return f"same recipe as trial {record['duplicate_of']}"
    if not record.get("feasible"):
        return "infeasible"
    if frontier and record["number"] == frontier[0]:
        return "recommended"
    if record["number"] in frontier:
        return "frontier"
    point = vector(record, objectives)
    by_number = {r["number"]: r for r in records}
    for number in frontier:
        if dominates(vector(by_number[number], objectives), point):
            return f"dominated by trial {number}"
    parent = (-float(record["parent"]["quality"]), *([1.0] * len(objectives)))
    if dominates(parent, point):
        return "dominated by the parent"
    return f"less than {MIN_GAIN:.0%} smaller or faster than the parent"


def closest_number(records: Sequence[Mapping[str, Any]]) -> int | None:
    complete = _candidates(records)
    if not complete:
        return None
    return int(complete[closest([float(r.get("excess", 0.0)) for r in complete])]["number"])


def build_result(
    records: Sequence[Mapping[str, Any]],
    spec: Mapping[str, Any],
    budget: Mapping[str, Any],
    variants: Mapping[int, str],
) -> dict[str, Any]:
    objectives = list(spec["objectives"])
    frontier = frontier_numbers(records, objectives)
    on_frontier = set(frontier)
    trials = []
    for r in sorted(records, key=lambda r: r["number"]):
        trial = dict(r)
        trial["frontier"] = r["number"] in on_frontier
        trial["variant_id"] = variants.get(int(r["number"]), "")
        trial["standing"] = standing(r, frontier, records, objectives)
        trials.append(trial)
    result: dict[str, Any] = {
        "study_name": spec["study"],
        "quality_metric": next((r["quality_metric"] for r in trials if "quality_metric" in r), ""),
        "objectives": ["quality", *objectives],
        "quality_budget": dict(budget),
        "parent": _parent(records),
        "trials": trials,
        "frontier": frontier,
    }
    if frontier:
        result["recommended_trial"] = frontier[0]
        result["recommended_variant"] = variants.get(frontier[0], "")
    elif not any(r.get("feasible") for r in _candidates(records)):
        number = closest_number(records)
        if number is not None:
            result["closest_trial"] = number
    result["message"] = summary(result, spec)
    return result


def counts(trials: Sequence[Mapping[str, Any]]) -> str:
    by_state: dict[str, int] = {}
    for t in trials:
        by_state[t["state"]] = by_state.get(t["state"], 0) + 1
    parts = [f"{n} {state.lower()}" for state, n in sorted(by_state.items())]
    return f"{len(trials)} trials ({', '.join(parts) or 'none'})"


def describe_trial(trial: Mapping[str, Any], spec: Mapping[str, Any]) -> str:
    """e.g. "trial 4 (prune.structured+quantize.static): accuracy 0.9694, latency_p50 0.61x,
    size 0.29x"."""
    values = trial.get("objectives", {})
    parts = [f"{trial.get('quality_metric', 'quality')} {values.get('quality', 0):.4f}"]
    parts += [f"{o} {values[o]:.3g}x" for o in spec["objectives"] if o in values]
    return f"trial {trial['number']} ({trial.get('chain', '')}): {', '.join(parts)}"


def limits_text(budget: Mapping[str, Any], spec: Mapping[str, Any]) -> str:
    limits = {k: v for k, v in budget.items() if k != "keep_failing"}
    limits |= {k: v for k, v in spec.get("constraints", {}).items() if k != "max_quality_drop"}
    return ", ".join(f"{k} {v:g}" for k, v in limits.items())


def summary(result: Mapping[str, Any], spec: Mapping[str, Any]) -> str:
    trials = result["trials"]
    by_number = {t["number"]: t for t in trials}
    text = counts(trials)
    if result["frontier"]:
        best = by_number[result["frontier"][0]]
        return (
            f"{text}; frontier of {len(result['frontier'])}; recommended: "
            f"{describe_trial(best, spec)}"
        )
    if "closest_trial" in result:
        near = by_number[result["closest_trial"]]
        return (
            f"{text}; no trial met the limits ({limits_text(result['quality_budget'], spec)}); "
            f"closest: {describe_trial(near, spec)}: {'; '.join(near.get('violations', []))}"
        )
    if any(t["state"] == COMPLETE for t in trials):
        return f"{text}; no trial within the limits improved on the parent"
    return f"{text}; no trial produced a measured variant"


def trial_line(record: Mapping[str, Any], spec: Mapping[str, Any]) -> str:
    """One line for a finished trial's progress event."""
    if record["state"] == COMPLETE:
        text = describe_trial(record, spec)
        violations = "; ".join(record.get("violations", []))
        text += "; feasible" if record.get("feasible") else f"; {violations}"
    else:
        text = f"trial {record['number']}: {record['state'].lower()}"
    if record.get("message"):
        text += f" ({record['message']})"
    return text
