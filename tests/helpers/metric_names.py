"""Metric names: the ones a real gateway exports on /metrics, and the ones a PromQL
expression (an alert rule, a dashboard query) reads."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.serve_process import serve

# The series Prometheus itself records for every scrape target, whatever the target
# exports (https://prometheus.io/docs/concepts/jobs_instances/).
PROMETHEUS_TARGET_SERIES = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    }
)

# The sample names a family of each type has in the Prometheus text format.
_SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}


def scrape_gateway(data_dir: Path) -> str:
    """The /metrics page of a real `pareto serve` on free loopback ports."""
    served = serve(data_dir)
    try:
        assert served.metrics_url, "`pareto serve` did not log its metrics port"
        with urllib.request.urlopen(served.metrics_url, timeout=30) as response:
            return response.read().decode()
    finally:
        served.process.terminate()
        served.process.wait(timeout=30)


def exported_metric_names(exposition: str) -> set[str]:
    """Every sample name a /metrics page carries or will carry: a family's samples, or, for
    a family without samples yet (a labelled metric before its first use), the names its
    type gives it."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        if family.samples:
            names.update(sample.name for sample in family.samples)
        else:
            names.update(family.name + suffix for suffix in _SAMPLE_SUFFIXES[family.type])
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
