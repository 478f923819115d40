"""`pareto variants MODEL`: the measured variants of a model, side by side with it.

Ratios (second line of a cell) are variant / parent, both measured in the same run: size
0.25x is four times smaller, p50 0.60x is 40% less latency. Latency is shown at the
smallest measured batch size; quality is the main metric the evaluation produced
(accuracy against labels when the dataset had them, else fidelity to the parent).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import click
from rich.console import Console
from rich.table import Table

from pareto.v1 import variants_pb2
from pareto_cli.client import ParetoClient
from pareto_cli.options import server_option, to_dict

COLUMNS = ("techniques", "size (x parent)", "p50 (x parent)", "memory", "quality", "budget ok")


def _ratio(value: float, parent: float) -> str:
    """The second line of a cell: variant / parent."""
    return f"\n{value / parent:.2f}x" if parent > 0 and value > 0 else ""


def size_cell(v: variants_pb2.Variant) -> str:
    size, parent = v.metrics.size_bytes, v.parent_metrics.size_bytes
    return f"{size / 1e6:.2f} MB{_ratio(size, parent)}" if size else "-"


def latency_cell(v: variants_pb2.Variant) -> str:
    if not v.metrics.latency:
        return "-"
    first = min(v.metrics.latency, key=lambda s: s.batch_size)
    parent = next(
        (s.p50_ms for s in v.parent_metrics.latency if s.batch_size == first.batch_size), 0.0
    )
    return f"{first.p50_ms:.3f} ms @b{first.batch_size}{_ratio(first.p50_ms, parent)}"


def memory_cell(v: variants_pb2.Variant) -> str:
    memory, parent = v.metrics.memory_bytes, v.parent_metrics.memory_bytes
    return f"{memory / 1e6:.1f} MB{_ratio(memory, parent)}" if memory else "-"


def quality_cell(v: variants_pb2.Variant) -> str:
    """The main quality metric: accuracy (with its change in points) when measured against
    labels, else the fidelity to the parent."""
    q, parent = v.metrics.quality, v.parent_metrics.quality
    if "accuracy" in q:
        text = f"accuracy {q['accuracy']:.2%}"
        if "accuracy" in parent:
            text += f"\n{(q['accuracy'] - parent['accuracy']) * 100:+.2f} pp"
        return text
    if "cosine_mean" in q:
        low = f"\nmin {q['cosine_min']:.4f}" if "cosine_min" in q else ""
        return f"cosine {q['cosine_mean']:.4f}{low}"
    if "top1_agreement" in q:
        return f"top-1 agreement {q['top1_agreement']:.2%}"
    if "max_abs_error" in q:
        return f"max abs error {q['max_abs_error']:.3g}"
    return "-"


def budget_cell(v: variants_pb2.Variant) -> str:
    if v.budget_ok:
        return "yes"
    return f"no: {v.budget_reason}" if v.budget_reason else "no"


def variants_table(variants: Sequence[variants_pb2.Variant]) -> Table:
    table = Table()
    table.add_column("variant", no_wrap=True)
    for column in COLUMNS:
        table.add_column(column)
    for v in variants:
        table.add_row(
            f"{v.id}\n{v.recipe.name}",
            "\n".join(s.technique for s in v.recipe.steps),
            size_cell(v),
            latency_cell(v),
            memory_cell(v),
            quality_cell(v),
            budget_cell(v),
        )
    return table


@click.command()
@click.argument("model", required=False, default="")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@server_option
def variants(model: str, as_json: bool, server: str) -> None:
    """List the variants of MODEL (every variant when MODEL is omitted)."""
    with ParetoClient(server) as client:
        request = variants_pb2.ListVariantsRequest(model=model)
        found = list(client.variants.ListVariants(request).variants)
    if as_json:
        dicts = [to_dict(v) for v in found]
        click.echo(json.dumps(dicts, indent=2))
        return
    if not found:
        click.echo(f"no variants{f' of {model}' if model else ''} yet")
        return
    Console().print(variants_table(found))
