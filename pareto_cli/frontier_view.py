"""A search result (pareto.v1.SearchResult) as a table: the parent, the frontier, the rest.

Ratios are to the parent measured in the same trial (its own run), so drift between
trials cancels; absolute figures are beside them.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.table import Table

from pareto.v1 import jobs_pb2

STATE_PREFIX = "TRIAL_STATE_"


def trial_state(trial: jobs_pb2.SearchTrial) -> str:
    return jobs_pb2.TrialState.Name(trial.state).removeprefix(STATE_PREFIX).lower()


def _value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):  # a Struct holds every number as a float: [-1.0] -> [-1]
        return f"[{', '.join(_value(v) for v in value)}]"
    return str(value)


def recipe_text(recipe: jobs_pb2.Recipe) -> str:
    """e.g. "prune.structured(ratio=0.5, finetune_epochs=5) -> quantize.dynamic(...)"."""
    from google.protobuf.json_format import MessageToDict

    parts = []
    for step in recipe.steps:
        config = MessageToDict(step.config)
        args = ", ".join(f"{k}={_value(v)}" for k, v in sorted(config.items()))
        parts.append(f"{step.technique}({args})")
    return " -> ".join(parts)


def role(result: jobs_pb2.SearchResult, trial: jobs_pb2.SearchTrial) -> str:
    state = trial_state(trial)
    if state != "complete":
        return state
    if result.HasField("recommended_trial") and trial.number == result.recommended_trial:
        return "recommended"
    if trial.frontier:
        return "frontier"
    if result.HasField("closest_trial") and trial.number == result.closest_trial:
        return "closest"
    if not trial.feasible:
        return "infeasible"
    return "dominated" if trial.standing.startswith(("dominated", "same")) else "no gain"


def _ratio(value: float, parent: float) -> str:
    return f"{value / parent:.2f}x" if parent > 0 else "-"


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def _row(result: jobs_pb2.SearchResult, t: jobs_pb2.SearchTrial, percentile: str) -> list[str]:
    m, p = t.metrics, t.parent
    measured = trial_state(t) == "complete"
    latency = getattr(m, f"latency_{percentile}_ms")
    note = t.message or "; ".join(t.violations) or t.standing
    return [
        f"#{t.number}",
        role(result, t),
        recipe_text(t.recipe),
        f"{m.quality:.4f} ({-m.quality_drop:+.4f})" if measured else "-",
        f"{latency:.3f} ms ({_ratio(latency, getattr(p, f'latency_{percentile}_ms'))})"
        if measured
        else "-",
        f"{_size(m.size_bytes)} ({_ratio(m.size_bytes, p.size_bytes)})" if measured else "-",
        _ratio(m.compressed_size_bytes, p.compressed_size_bytes) if measured else "-",
        t.variant_id or "-",
        note,
    ]


def shown_trials(result: jobs_pb2.SearchResult, show_all: bool) -> Iterable[jobs_pb2.SearchTrial]:
    """The frontier in its order (recommended first), then the closest trial, then (with
    show_all) every other trial by number."""
    by_number = {t.number: t for t in result.trials}
    order = list(result.frontier)
    if result.HasField("closest_trial"):
        order.append(result.closest_trial)
    if show_all:
        order += [t.number for t in result.trials if t.number not in order]
    return [by_number[n] for n in order if n in by_number]


def latency_percentile(result: jobs_pb2.SearchResult) -> str:
    first = next((o for o in result.spec.objectives if o.startswith("latency_")), "latency_p50")
    return first.removeprefix("latency_")


def search_table(result: jobs_pb2.SearchResult, show_all: bool = False) -> Table:
    percentile = latency_percentile(result)
    batch = result.spec.batch_size or 1
    metric = result.quality_metric or "quality"
    table = Table(
        title=f"{result.model} v{result.model_version}: search {result.job_id} "
        f"({jobs_pb2.JobState.Name(result.state).removeprefix('JOB_STATE_')})"
    )
    for column in ("trial", "role", "recipe", f"{metric} (vs parent)"):
        table.add_column(column, overflow="fold")
    table.add_column(f"{percentile} b{batch} (x parent)", no_wrap=True)
    for column in ("size (x parent)", "gzip x", "variant", "note"):
        table.add_column(column, overflow="fold")
    p = result.parent
    table.add_row(
        "parent",
        "",
        f"{result.model} v{result.model_version}",
        f"{p.quality:.4f}",
        f"{getattr(p, f'latency_{percentile}_ms'):.3f} ms",
        _size(p.size_bytes),
        "1.00x",
        "",
        "",
    )
    for t in shown_trials(result, show_all):
        table.add_row(*_row(result, t, percentile))
    return table


def summary_lines(result: jobs_pb2.SearchResult) -> list[str]:
    counts: dict[str, int] = {}
    for t in result.trials:
        counts[role(result, t)] = counts.get(role(result, t), 0) + 1
    lines = [
        f"{len(result.trials)} trials: "
        + ", ".join(f"{n} {r}" for r, n in sorted(counts.items()))
        + ". Objectives: "
        + ", ".join(result.objectives)
        + "; limits: "
        + ", ".join(f"{k} {v:g}" for k, v in _limits(result))
    ]
    if result.recommended_variant:
        lines.append(f"recommended variant: {result.recommended_variant}")
    if result.reason:
        lines.append(f"reason: {result.reason}")
    return lines


def _limits(result: jobs_pb2.SearchResult) -> list[tuple[str, float]]:
    budget = result.quality_budget
    limits = [(f.name, float(v)) for f, v in budget.ListFields() if f.name != "keep_failing"]
    c = result.spec.constraints
    limits += [(f.name, float(v)) for f, v in c.ListFields() if f.name != "max_quality_drop"]
    return limits
