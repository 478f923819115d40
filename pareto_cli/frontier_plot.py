"""The frontier as a PNG: quality against latency and against size, both relative to the
parent (which sits at 1.0 on each), one panel each.

Frontier points are drawn and joined in each panel, the recommended one ringed green,
dominated trials faded, infeasible ones as faded crosses, the parent as a black star, and
the quality limit as a dashed line. A latency axis spanning more than 4x is logarithmic.
matplotlib (Agg, no display) is imported only here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pareto.v1 import jobs_pb2

KINDS = ("dominated", "infeasible", "frontier", "recommended", "hand")
LOG_SPREAD = 4.0  # x values spread wider than this: a log axis


@dataclass(frozen=True)
class PlotPoint:
    quality: float
    latency: float  # x parent
    size: float  # x parent
    kind: str  # one of KINDS
    label: str = ""


@dataclass(frozen=True)
class PlotLabels:
    title: str
    quality: str  # y axis, e.g. "accuracy"
    latency: str  # x axis of the first panel
    parent_quality: float
    quality_floor: float | None = None


def _ratio(value: float, parent: float) -> float:
    return value / parent if parent > 0 else float("nan")


def points_from_result(result: jobs_pb2.SearchResult) -> tuple[list[PlotPoint], PlotLabels]:
    """Every measured trial of a search as a point; axes named from the spec."""
    from pareto_cli.frontier_view import latency_percentile, role

    percentile = latency_percentile(result)
    points = []
    for t in result.trials:
        kind = role(result, t)
        if kind in ("pruned", "failed", "running"):
            continue
        kind = {"closest": "infeasible", "no gain": "dominated"}.get(kind, kind)
        latency = getattr(t.metrics, f"latency_{percentile}_ms")
        points.append(
            PlotPoint(
                quality=t.metrics.quality,
                latency=_ratio(latency, getattr(t.parent, f"latency_{percentile}_ms")),
                size=_ratio(t.metrics.size_bytes, t.parent.size_bytes),
                kind=kind,
                label=f"#{t.number}" if kind in ("frontier", "recommended") else "",
            )
        )
    labels = PlotLabels(
        title=f"{result.model} v{result.model_version}: search {result.job_id}",
        quality=result.quality_metric or "quality",
        latency=f"latency {percentile} at batch {result.spec.batch_size or 1} (x parent)",
        parent_quality=result.parent.quality,
        quality_floor=quality_floor(result),
    )
    return points, labels


def quality_floor(result: jobs_pb2.SearchResult) -> float | None:
    budget = result.quality_budget
    if budget.HasField("max_accuracy_drop") and result.quality_metric == "accuracy":
        return result.parent.quality - budget.max_accuracy_drop
    if budget.HasField("min_cosine") and result.quality_metric == "cosine_mean":
        return budget.min_cosine
    return None


def _panel(ax, points: Sequence[PlotPoint], axis: str, labels: PlotLabels, xlabel: str) -> None:
    styles = {
        "dominated": {"color": "0.6", "alpha": 0.45, "marker": "o", "s": 22},
        "infeasible": {"color": "tab:red", "alpha": 0.35, "marker": "x", "s": 22},
        "frontier": {"color": "tab:blue", "alpha": 1.0, "marker": "o", "s": 40},
        "recommended": {
            "color": "tab:blue",
            "alpha": 1.0,
            "marker": "o",
            "s": 90,
            "edgecolors": "tab:green",
            "linewidths": 2,
        },
        "hand": {"color": "tab:orange", "alpha": 1.0, "marker": "D", "s": 46},
    }
    for kind in KINDS:
        chosen = [p for p in points if p.kind == kind]
        if chosen:
            xs = [getattr(p, axis) for p in chosen]
            ax.scatter(xs, [p.quality for p in chosen], label=kind, zorder=3, **styles[kind])
    front = sorted(
        (p for p in points if p.kind in ("frontier", "recommended")), key=lambda p: getattr(p, axis)
    )
    if front:
        ax.step(
            [getattr(p, axis) for p in front],
            [p.quality for p in front],
            where="post",
            color="tab:blue",
            linewidth=1.2,
            zorder=2,
        )
    for p in points:
        if p.label:
            ax.annotate(
                p.label,
                (getattr(p, axis), p.quality),
                fontsize=7,
                xytext=(4, 3),
                textcoords="offset points",
            )
    ax.scatter(
        [1.0], [labels.parent_quality], marker="*", s=180, color="black", label="parent", zorder=5
    )
    if labels.quality_floor is not None:
        ax.axhline(
            labels.quality_floor,
            color="tab:red",
            linestyle="--",
            linewidth=0.8,
            label="quality limit",
        )
    xs = [getattr(p, axis) for p in points if getattr(p, axis) > 0] + [1.0]
    if max(xs) / min(xs) > LOG_SPREAD:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(labels.quality)
    ax.grid(True, alpha=0.3)


def plot_points(points: Sequence[PlotPoint], labels: PlotLabels, path: Path) -> Path:
    """Write the two-panel PNG to `path` (parent directories created)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    try:
        _panel(left, points, "latency", labels, labels.latency)
        _panel(right, points, "size", labels, "file size (x parent)")
        handles, names = left.get_legend_handles_labels()
        fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=8)
        fig.suptitle(labels.title)
        fig.tight_layout(rect=(0, 0.07, 1, 1))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
    return path


def plot_result(result: jobs_pb2.SearchResult, path: Path) -> Path:
    points, labels = points_from_result(result)
    return plot_points(points, labels, path)
