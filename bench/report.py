"""Writes docs/benchmarks.md from bench/results/*.json: `python -m bench.report [--check]`.

Per benchmark: what it measures (the first paragraph of its module's docstring), how to run
it, the machine it ran on, its key figures as tables, and every target it recorded with
MET or MISSED. Known result shapes get hand-picked tables (`TABLES`); any other JSON is
flattened into a table of its scalar values, so a new bench never breaks the page.
`--check` exits 1 when docs/benchmarks.md differs from what would be written.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
OUTPUT = ROOT / "docs" / "benchmarks.md"

ORDER = (
    "serving",
    "http_stacks",
    "peers",
    "routing",
    "compression",
    "transformers",
    "distillation",
    "runtimes",
    "search",
    "scale",
    "load",
)
FLAG_KEYS = {"ok", "met", "pass", "passed"}  # a record's own verdict on its target
NAME_KEYS = ("label", "case", "kind", "name", "target")  # what names a record in a list
CONTAINERS = {"results", "models", "variants", "targets", "ratios", "decision", "cells"}
META = {"bench", "when", "created_unix", "duration_s", "machine", "versions", "packages"}
MAX_GENERIC_ROWS = 60


@dataclass(frozen=True)
class Table:
    """Rows found at `path` ("*" expands every key of a dict), with `columns` (space
    separated dotted paths; "*" = every scalar) read from each row; `keys` (space separated)
    head the expanded "*" keys and the keys of keyed rows."""

    title: str
    path: str
    columns: str
    keys: str = ""


@dataclass(frozen=True)
class Check:
    where: str
    target: str
    value: Any
    met: bool


LATENCY = "requests p50_ms p99_ms throughput_rps"
SIDE = "side_by_side.quality side_by_side.latency_x side_by_side.size_x"
STUDENT = "size_x params_x speedup cosine_mean cosine_min"
TABLES: dict[str, tuple[Table, ...]] = {
    "serving": (
        Table(
            "Gateway (tritonclient) against ONNX Runtime called directly",
            "cells",
            f"case concurrency side {LATENCY}",
        ),
        Table(
            "Ratios per case: p50 overhead at concurrency 1, throughput gateway/direct",
            "ratios",
            "case p50_overhead_ms_c1 throughput_ratio throughput_ratio_concurrency",
        ),
        Table("Transport floor (calls that run no model)", "transport_floor", "*"),
    ),
    "http_stacks": (
        Table(
            "Requests per second per stack and case (medians over rounds)",
            "cells",
            "case stack throughput_rps p50_ms p99_ms rps_per_round",
        ),
        Table("Throughput relative to the chosen stack", "ratios", "*"),
        Table("Choice", "decision", "*"),
    ),
    "peers": (
        Table(
            "Requests per second, medians over rounds (floor: gRPC with no model; direct: "
            "ONNX Runtime in the client's process)",
            "cells",
            "protocol case concurrency sides.pareto.req_per_s sides.kserve.req_per_s "
            "sides.mlserver.req_per_s sides.floor.req_per_s sides.direct.req_per_s",
        ),
        Table(
            "p50 latency (ms) and errors",
            "cells",
            "protocol case concurrency sides.pareto.p50_ms sides.kserve.p50_ms "
            "sides.mlserver.p50_ms sides.pareto.errors sides.kserve.errors sides.mlserver.errors",
        ),
    ),
    "routing": (
        Table("Router decision", "decision", "kind calls p50_us p99_us"),
        Table("End to end", "end_to_end.sides", LATENCY, "side"),
        Table("End-to-end cost", "end_to_end", "case p50_overhead_ms p50_split_cost_ms"),
    ),
    "compression": (
        Table(
            "Parents",
            "results.*",
            "speed_batch parent.size_bytes parent.parameters parent.memory_bytes",
            "model",
        ),
        Table(
            "Variants, as ratios to their parent (speed at the parent's speed_batch)",
            "results.*.variants",
            "label technique ratios.size_x ratios.gzip_x ratios.speedup "
            "ratios.accuracy_drop_pp ratios.cosine_mean ratios.top1_agreement",
            "model",
        ),
    ),
    "transformers": (
        Table(
            "Parent (fp32)",
            "results.*",
            "speed_batch parent_p50_ms parent.size_bytes parent.memory_bytes",
            "model",
        ),
        Table(
            "Variants, as ratios to fp32 (speed at batch 1, sequence 32); fidelity on held-out "
            "sentences",
            "results.*.variants",
            "label ratios.size_x ratios.speedup ratios.speedup_vs_dynamic ratios.cosine_mean "
            "ratios.cosine_min ratios.nn_top1_agreement ratios.pairwise_spearman",
            "model",
        ),
        Table(
            "Best int4 weight-only variant",
            "results.*.weight_only_int4_best",
            "label size_x speedup cosine_mean",
            "model",
        ),
        Table("Not measured here", "results.*.not_measured", "label reason", "model"),
    ),
    "distillation": (
        Table("MiniLM transfer set", "minilm.sentences", "transfer held_out seq_len"),
        Table(
            "MiniLM 3-layer student against its teacher",
            "minilm.student",
            f"{STUDENT} nn_top1_agreement nn_overlap_at_5 pairwise_spearman",
        ),
        Table("MiniLM student + int8 against the teacher", "minilm.student_int8", STUDENT),
        Table(
            "Digits CNN variants against the teacher",
            "digits.variants",
            "size_x gzip_x params_x speedup accuracy_drop_pp cosine_mean",
            "variant",
        ),
        Table("Digits student accuracy", "digits.student_accuracy", "mean", "run"),
        Table("Digits QAT against PTQ", "digits.qat", "samples ptq_int8 qat_int8 gain"),
        Table("Digits gradual pruning", "digits.gradual", "target_sparsity achieved_sparsity"),
    ),
    "runtimes": (
        Table(
            "Latency per runtime",
            "models.*.latency.*",
            "p50_ms p99_ms throughput_rps p50_x_ort",
            "model batch runtime",
        ),
        Table(
            "Quality per runtime",
            "models.*.quality",
            "accuracy cosine_mean_vs_ort cosine_min",
            "model runtime",
        ),
        Table(
            "edgetpu_tflite build",
            "models.*.edgetpu_tflite",
            "device build_s cached_prepare_s float_ops",
            "model",
        ),
    ),
    "search": (
        Table(
            "Search jobs",
            "models.*.search",
            "sampler n_trials states cached_steps feasible frontier_size recommended_trial wall_s",
            "model",
        ),
        Table(
            "Parents",
            "models.*",
            "budget batch parent.quality parent.latency_p50_ms parent.size_bytes",
            "model",
        ),
        Table("Frontier", "models.*.frontier", f"trial standing recipe {SIDE}", "model"),
        Table(
            "Hand recipes",
            "models.*.hand",
            f"label recipe {SIDE} within_budget dominated_by_frontier_trials",
            "model",
        ),
    ),
    "scale": (
        Table(
            "Search runs (the same budget and seed)",
            "runs",
            "mode parallelism wall_s trials_s mean_trial_s concurrency state trials ran workers "
            "frontier_size busy_before busy_after",
        ),
        Table(
            "Parallelism 2 against 1 (wall time ratio; frontiers: hypervolume, cross-dominance)",
            "comparisons",
            "mode value met hypervolume_p1 hypervolume_p2 hypervolume_ratio "
            "p1_points_dominated_by_p2 p2_points_dominated_by_p1",
        ),
    ),
    "load": (
        Table("Overall", "overall", "requests errors throughput_rps p50_ms p99_ms"),
        Table("Per target", "per_target", "requests errors throughput_rps p50_ms p99_ms", "target"),
        Table("Server RSS (MiB)", "rss", "*"),
    ),
}


def fmt(value: Any) -> str:
    """One table cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(fmt(v) for v in value if not isinstance(v, dict | list))
    if isinstance(value, dict):
        return ", ".join(f"{k}={fmt(v)}" for k, v in value.items() if not isinstance(v, dict))
    return str(value).replace("|", "\\|").replace("\n", " ")


def _heading(column: str, columns: list[str]) -> str:
    """A column's last name, or its last two when another column ends the same way
    (`sides.pareto.req_per_s` and `sides.kserve.req_per_s`: `pareto.req_per_s`)."""
    last = column.rsplit(".", 1)[-1]
    if sum(c.rsplit(".", 1)[-1] == last for c in columns) > 1:
        return ".".join(column.split(".")[-2:])
    return last


def markdown_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def name_of(item: Any, index: int) -> str:
    if isinstance(item, dict):
        for key in NAME_KEYS:
            if isinstance(item.get(key), str):
                return str(item[key])
    return f"#{index}"


def lookup(record: dict[str, Any], dotted: str) -> Any:
    node: Any = record
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def records(node: Any, prefix: list[str]) -> list[tuple[list[str], dict[str, Any]]]:
    """The rows a node holds: list items, keyed records, or the node itself."""
    if isinstance(node, list):
        return [(prefix, item) for item in node if isinstance(item, dict)]
    if isinstance(node, dict) and node and all(isinstance(v, dict) for v in node.values()):
        return [([*prefix, key], value) for key, value in node.items()]
    return [(prefix, node)] if isinstance(node, dict) and node else []


def rows_at(node: Any, parts: list[str], prefix: list[str]) -> list[tuple[list[str], dict]]:
    if not parts:
        return records(node, prefix)
    head, rest = parts[0], parts[1:]
    if head == "*" and isinstance(node, dict):
        return [row for k, v in node.items() for row in rows_at(v, rest, [*prefix, k])]
    if isinstance(node, dict) and head in node:
        return rows_at(node[head], rest, prefix)
    return []


def render_table(data: dict[str, Any], table: Table) -> list[str]:
    rows = rows_at(data, table.path.split("."), [])
    if not rows:
        return []
    keys, columns = table.keys.split(), table.columns.split()
    if columns == ["*"]:
        columns = [k for k, v in rows[0][1].items() if not isinstance(v, dict | list)]
    headers = keys + [_heading(c, columns) for c in columns]
    body = [
        (names + [""] * len(keys))[: len(keys)] + [fmt(lookup(record, c)) for c in columns]
        for names, record in rows
    ]
    return [f"**{table.title}**", "", *markdown_table(headers, body), ""]


def flatten(node: Any, path: str) -> list[tuple[str, Any]]:
    """Scalar leaves under `node`, named by their path."""
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in flatten(v, f"{path}.{k}".lstrip("."))]
    if isinstance(node, list):
        if all(not isinstance(v, dict | list) for v in node):
            return [(path, node if len(node) <= 20 else f"{len(node)} values")]
        return [leaf for i, v in enumerate(node) for leaf in flatten(v, f"{path}[{name_of(v, i)}]")]
    return [(path, node)]


def generic_figures(data: dict[str, Any]) -> list[str]:
    leaves = [leaf for k, v in data.items() if k not in META for leaf in flatten(v, k)]
    rows = [[f"`{path}`", fmt(value)] for path, value in leaves[:MAX_GENERIC_ROWS]]
    lines = ["**Recorded values**", "", *markdown_table(["field", "value"], rows), ""]
    if len(leaves) > MAX_GENERIC_ROWS:
        lines += [f"({len(leaves) - MAX_GENERIC_ROWS} more values in the JSON.)", ""]
    return lines


def figures(name: str, data: dict[str, Any]) -> list[str]:
    lines = [line for table in TABLES.get(name, ()) for line in render_table(data, table)]
    return lines or generic_figures(data)


def thresholds(data: dict[str, Any]) -> dict[str, Any]:
    """A top-level "targets" mapping of names to threshold values (no verdicts)."""
    targets = data.get("targets")
    if not isinstance(targets, dict):
        return {}
    return {k: v for k, v in targets.items() if not isinstance(v, dict | list)}


def number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def own_checks(record: dict, context: list[str], name: str, limits: dict) -> list[Check]:
    """Verdicts a record holds: a flag on its own target ("met", "pass", "ok") or per
    measure ("<measure>_ok", the measure being the sibling value named <measure>...)."""
    checks = []
    for key, verdict in record.items():
        if not isinstance(verdict, bool):
            continue
        if key in FLAG_KEYS:
            target = str(record.get("target") or name)
            checks.append(Check(" / ".join(context), target, record.get("value"), verdict))
        elif key.endswith("_ok"):
            measure = key.removesuffix("_ok")
            value = next(
                (v for k, v in record.items() if k.startswith(measure) and number(v)), None
            )
            limit = next((f"{k} = {fmt(v)}" for k, v in limits.items() if measure in k), "")
            target = f"{measure} ({limit})" if limit else measure
            checks.append(Check(" / ".join([*context, name]), target, value, verdict))
    return checks


def find_checks(node: Any, context: list[str], name: str, limits: dict) -> list[Check]:
    inner = context if not name or name in CONTAINERS else [*context, name]
    if isinstance(node, list):
        return [
            check
            for i, item in enumerate(node)
            for check in find_checks(item, inner, name_of(item, i), limits)
        ]
    if not isinstance(node, dict):
        return []
    checks = own_checks(node, context, name, limits)
    for key, value in node.items():
        checks += find_checks(value, inner, key, limits)
    return checks


def check_lines(data: dict[str, Any]) -> list[str]:
    limits = thresholds(data)
    checks = find_checks(data, [], "", limits)
    if not checks:
        note = "No targets recorded."
        if limits:
            note = "Thresholds recorded, but no result against them: " + fmt(limits) + "."
        return [note, ""]
    met = sum(c.met for c in checks)
    rows = [[c.where, c.target, fmt(c.value), "MET" if c.met else "**MISSED**"] for c in checks]
    headers = ["where", "target", "value", "result"]
    if not any(c.where for c in checks):
        headers, rows = headers[1:], [row[1:] for row in rows]
    return [f"{met} of {len(checks)} targets met.", "", *markdown_table(headers, rows), ""]


def summary_cell(data: dict[str, Any]) -> str:
    checks = find_checks(data, [], "", thresholds(data))
    if not checks:
        return "no targets recorded"
    missed = sum(not c.met for c in checks)
    text = f"{len(checks) - missed} of {len(checks)} met"
    return f"{text}, **{missed} MISSED**" if missed else text


def description(name: str) -> str:
    """The first paragraph of bench/<name>.py's docstring."""
    module = ROOT / "bench" / f"{name}.py"
    try:
        doc = ast.get_docstring(ast.parse(module.read_text())) or ""
    except (OSError, SyntaxError):
        return f"(no readable bench/{name}.py)"
    return " ".join(doc.split("\n\n")[0].split()) or f"(bench/{name}.py has no docstring)"


def run_info(data: dict[str, Any]) -> list[str]:
    lines = []
    when = data.get("when") or data.get("created_unix")
    if isinstance(when, int | float):
        when = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if when:
        took = f" ({fmt(data['duration_s'])} s)" if "duration_s" in data else ""
        lines.append(f"- Recorded: {when}{took}")
    for key in ("machine", "versions", "packages"):
        if isinstance(data.get(key), dict):
            lines.append(f"- {key.capitalize()}: {fmt(data[key])}")
    others = [(k, v) for k, v in data.items() if k not in META and not isinstance(v, dict | list)]
    lines += [f"- `{k}`: {fmt(v)}" for k, v in others]
    return lines or ["- No machine information recorded."]


def plot_links(data: dict[str, Any]) -> list[str]:
    paths = [v for _, v in flatten(data, "") if isinstance(v, str) and v.endswith(".png")]
    links = [f"[{Path(p).name}](../{p})" for p in paths if (ROOT / p).is_file()]
    return [f"Plots: {', '.join(links)}.", ""] if links else []


def section(name: str, data: dict[str, Any] | None, error: str) -> list[str]:
    lines = [f"## {name}", "", description(name), "", f"Run: `python -m bench.{name}`", ""]
    if data is None:
        return [*lines, f"Could not read bench/results/{name}.json: {error}", ""]
    lines += [*run_info(data), "", "### Targets", "", *check_lines(data)]
    return [*lines, "### Figures", "", *figures(name, data), *plot_links(data)]


def load(path: Path) -> tuple[dict[str, Any] | None, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return None, str(err)
    return (data, "") if isinstance(data, dict) else ({"value": data}, "")


def ordered(paths: list[Path]) -> list[Path]:
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(paths, key=lambda p: (rank.get(p.stem, len(ORDER)), p.stem))


def render() -> str:
    results = [(p.stem, *load(p)) for p in ordered(list(RESULTS.glob("*.json")))]
    head = [
        "# Benchmarks",
        "",
        "Every benchmark under `bench/` measures Pareto side by side in one run and writes its",
        "results to `bench/results/<name>.json`; this page is generated from those files by",
        "`python -m bench.report` (do not edit it by hand; `python -m bench.report --check`",
        "fails when it is stale). `make bench` runs them all. Each section says what the",
        "benchmark measures, the machine it ran on, the targets it records, met or missed, and",
        "its key figures. Back to the [README](../README.md).",
        "",
        *markdown_table(
            ["benchmark", "targets"],
            [[f"[{n}](#{n})", summary_cell(d) if d else "unreadable"] for n, d, _ in results],
        ),
        "",
    ]
    body = [line for name, data, error in results for line in section(name, data, error)]
    return "\n".join(head + body).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT.relative_to(ROOT)} is stale: run `python -m bench.report`")
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
