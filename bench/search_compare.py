"""bench.search's side-by-side part: the parent, the search's frontier variants and the hand
recipes measured in ONE `evaluate` run, dominance between them, and the plot."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from compressors.base import Artifact, Dataset
from compressors.measure.evaluate import EvaluationSettings, evaluate
from pareto.v1 import jobs_pb2, variants_pb2
from pareto_cli.frontier_plot import PlotPoint, plot_points, points_from_result
from pareto_cli.frontier_view import recipe_text
from service.search.frontier import dominates
from service.store.blobs import BlobStore

MIN_ITERATIONS = 100
# The recipes a user would try by hand: (label, technique, config).
HAND = [
    ("dynamic int8", "quantize.dynamic", {"per_channel": True}),
    ("static int8", "quantize.static", {"method": "minmax", "per_channel": True}),
]
HAND_TEXT = {label: f"{technique}({config})" for label, technique, config in HAND}


def _artifact(path: Path) -> Artifact:
    from runtimes.registry import get_runtime

    session = get_runtime("onnxruntime_cpu").load(Path(path))
    return Artifact(Path(path), "onnx", session.signature)


def _figures(m: dict[str, Any], parent: dict[str, Any], metric: str, batch: int) -> dict:
    def p50(x: dict[str, Any]) -> float:
        return next(e["p50_ms"] for e in x["latency"] if e["batch_size"] == batch)

    return {
        "quality": m["quality"][metric],
        "quality_drop": parent["quality"][metric] - m["quality"][metric],
        "latency_p50_ms": p50(m),
        "latency_x": p50(m) / p50(parent),
        "size_bytes": m["size_bytes"],
        "size_x": m["size_bytes"] / parent["size_bytes"],
    }


def _point(f: dict[str, Any]) -> tuple[float, float, float]:
    return (-f["quality"], f["latency_x"], f["size_x"])


def compare(
    suite: dict[str, Any],
    parent_sha256: str,
    result: jobs_pb2.SearchResult,
    frontier: list[tuple[jobs_pb2.SearchTrial, variants_pb2.Variant]],
    hand: list[variants_pb2.Variant],
    data_dir: Path,
    threads: int,
) -> dict[str, Any]:
    blobs = BlobStore(data_dir)
    arrays = dict(suite["datasets"]["evaluation"])
    labels = arrays.pop("labels", None)
    dataset = Dataset("evaluation", arrays, labels)
    variants = [v for _, v in frontier] + hand
    settings = EvaluationSettings(
        batch_sizes=(suite["batch"],),
        iterations=max(MIN_ITERATIONS, suite["iterations"]),
        threads=threads,
        measure_memory=False,
    )
    parent_m, measured = evaluate(
        _artifact(blobs.path(parent_sha256)),
        [_artifact(blobs.path(v.sha256)) for v in variants],
        dataset,
        settings,
    )
    metric = "accuracy" if "accuracy" in parent_m["quality"] else "cosine_mean"
    figures = [_figures(m, parent_m, metric, suite["batch"]) for m in measured]
    front = [
        {
            "trial": t.number,
            "variant": v.id,
            "sha256": v.sha256,
            "recipe": recipe_text(t.recipe),
            "standing": t.standing,
            "search_trial": {"objectives": dict(t.objectives), "seconds": t.seconds},
            "side_by_side": f,
        }
        for (t, v), f in zip(frontier, figures, strict=False)
    ]
    within = _budget(metric)
    hands = []
    for v, f in zip(hand, figures[len(frontier) :], strict=True):
        beaten = [e["trial"] for e in front if dominates(_point(e["side_by_side"]), _point(f))]
        hands.append(
            {
                "label": v.recipe.name,
                "variant": v.id,
                "sha256": v.sha256,
                "recipe": HAND_TEXT.get(v.recipe.name, recipe_text(v.recipe)),
                "side_by_side": f,
                "within_budget": within(f),
                "dominated_by_frontier_trials": beaten,
            }
        )
    return {
        "batch": suite["batch"],
        "quality_metric": metric,
        "budget": "accuracy drop <= 1 pp" if metric == "accuracy" else "mean cosine >= 0.99",
        "parent": _figures(parent_m, parent_m, metric, suite["batch"]),
        "search": _search_summary(result),
        "frontier": front,
        "hand": hands,
        "side_by_side_iterations": settings.iterations,
    }


def _budget(metric: str) -> Any:
    if metric == "accuracy":
        return lambda f: f["quality_drop"] <= 0.01 + 1e-9
    return lambda f: f["quality"] >= 0.99 - 1e-9


def _search_summary(result: jobs_pb2.SearchResult) -> dict[str, Any]:
    states: dict[str, int] = {}
    for t in result.trials:
        name = jobs_pb2.TrialState.Name(t.state).removeprefix("TRIAL_STATE_").lower()
        states[name] = states.get(name, 0) + 1
    return {
        "job": result.job_id,
        "n_trials": len(result.trials),
        "states": states,
        "feasible": sum(t.feasible for t in result.trials),
        "cached_steps": sum(t.cached_steps for t in result.trials),
        "frontier_size": len(result.frontier),
        "recommended_trial": result.recommended_trial,
        "recommended_variant": result.recommended_variant,
        "sampler": result.spec.sampler,
        "techniques": list(result.spec.techniques),
        "message": result.reason or "",
    }


def plot_comparison(result: jobs_pb2.SearchResult, entry: dict[str, Any], path: Path) -> Path:
    """The search's other trials (their own measurements, faded) behind the frontier and the
    hand recipes as measured side by side."""
    trials, labels = points_from_result(result)
    points = [p for p in trials if p.kind in ("dominated", "infeasible")]
    for e in entry["frontier"]:
        f = e["side_by_side"]
        kind = "recommended" if e["trial"] == result.recommended_trial else "frontier"
        points.append(PlotPoint(f["quality"], f["latency_x"], f["size_x"], kind, f"#{e['trial']}"))
    for h in entry["hand"]:
        f = h["side_by_side"]
        points.append(PlotPoint(f["quality"], f["latency_x"], f["size_x"], "hand", h["label"]))
    title = (
        f"{result.model}: frontier of {len(result.trials)} trials vs hand recipes "
        f"(ORT CPU, batch {entry['batch']}, {entry['budget']})"
    )
    labels = replace(labels, title=title, parent_quality=entry["parent"]["quality"])
    return plot_points(points, labels, path)
