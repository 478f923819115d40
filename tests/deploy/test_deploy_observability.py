"""deploy/prometheus and deploy/grafana: the alert rules pass `promtool check rules` and
their unit tests (`promtool test rules`: synthetic series, alerts that must and must not
fire); the dashboard parses, shows what operators need, its queries are valid PromQL
(checked by promtool too) and every metric any of them reads is one the gateway exports:
the names on the /metrics page of a real `pareto serve`, plus the series Prometheus itself
records per scrape target (`up`, ...) for the alert rules. A rule and a query made up here
show that a metric the gateway does not export is caught.

promtool comes from Debian's prometheus package (binary only, put into the venv by
`make install`). Grafana itself is not available here: the dashboard is not rendered.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.helpers.deploy_tools import DEPLOY, run, tool
from tests.helpers.metric_names import (
    PROMETHEUS_TARGET_SERIES,
    exported_metric_names,
    grafana_to_promql,
    promql_metric_names,
    scrape_gateway,
)

RULES = DEPLOY / "prometheus" / "pareto-alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "pareto-alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "pareto-dashboard.json"


@pytest.fixture(scope="module")
def known_metrics(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Exactly the sample names a real gateway's /metrics page carries."""
    return exported_metric_names(scrape_gateway(tmp_path_factory.mktemp("gateway") / "data"))


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def rules_reading_unknown_metrics(rules: dict, known: set[str]) -> dict[str, set[str]]:
    """Alert name -> the metrics its expression reads that are not in `known`."""
    unknown = {}
    for rule in (r for g in rules["groups"] for r in g["rules"]):
        names = promql_metric_names(rule["expr"])
        assert names, rule["alert"]
        if names - known:
            unknown[rule["alert"]] = names - known
    return unknown


def queries_reading_unknown_metrics(dashboard: dict, known: set[str]) -> dict[str, set[str]]:
    """Dashboard query (panel target or variable) -> the metrics it reads not in `known`."""
    queries = dashboard_exprs(dashboard) + [
        v["definition"] for v in dashboard["templating"]["list"] if v.get("definition")
    ]
    unknown = {}
    for query in queries:
        expr = query
        if expr.startswith("label_values("):  # label_values(SELECTOR, label)
            expr = expr.removeprefix("label_values(").rsplit(",", 1)[0]
        names = promql_metric_names(expr)
        assert names, query
        if names - known:
            unknown[query] = names - known
    return unknown


def test_promtool_checks_the_rules():
    result = run(tool("promtool"), "check", "rules", str(RULES))
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_of_the_alerts_pass():
    result = run(tool("promtool"), "test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert "SUCCESS" in result.stdout


def test_promtool_rejects_a_broken_rule(tmp_path: Path):
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: sum by (model (rate(x[5m]))\n"
    )
    result = run(tool("promtool"), "check", "rules", str(bad), check=False)
    assert result.returncode != 0


def test_every_alert_is_unit_tested_except_memory_and_shadow_alerts():
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    tested = {case["alertname"] for t in tests for case in t["alert_rule_test"]}
    untested = alerts - tested
    # Memory (a process gauge) and the two shadow alerts: syntax-checked only.
    assert untested <= {"ParetoMemoryHigh", "ParetoShadowAgreementLow", "ParetoShadowCopiesDropped"}


def test_rules_read_only_metrics_the_gateway_exports(known_metrics):
    # ParetoTargetDown reads `up`, which Prometheus records per target.
    scraped = known_metrics | PROMETHEUS_TARGET_SERIES
    assert rules_reading_unknown_metrics(yaml.safe_load(RULES.read_text()), scraped) == {}


def test_known_metrics_are_the_live_exports_only(known_metrics):
    assert "pareto_inference_requests_total" in known_metrics  # read from a real /metrics page
    assert "pareto_rollbacks_total" in known_metrics  # a labelled counter before its first use
    assert not known_metrics & PROMETHEUS_TARGET_SERIES  # Prometheus' own, not the gateway's


def test_a_rule_reading_a_metric_the_gateway_does_not_export_is_caught(known_metrics):
    rules = yaml.safe_load(RULES.read_text())
    rules["groups"][0]["rules"].append(
        {"alert": "MadeUp", "expr": "rate(pareto_made_up_total[5m]) > 0 and up == 1"}
    )
    scraped = known_metrics | PROMETHEUS_TARGET_SERIES
    assert rules_reading_unknown_metrics(rules, scraped) == {"MadeUp": {"pareto_made_up_total"}}


def test_a_dashboard_query_reading_a_metric_the_gateway_does_not_export_is_caught(
    dashboard, known_metrics
):
    made_up = 'sum by (model) (pareto_made_up_bytes{job=~"$job"})'
    panel = {"id": 999, "type": "timeseries", "targets": [{"refId": "A", "expr": made_up}]}
    broken = dashboard | {"panels": [*dashboard["panels"], panel]}
    assert queries_reading_unknown_metrics(broken, known_metrics) == {
        made_up: {"pareto_made_up_bytes"}
    }


def test_metric_name_extraction():
    expr = (
        'histogram_quantile(0.99, sum by (model, le) (rate(pareto_x_bucket{code!="OK",'
        ' le="+Inf"}[$__rate_interval]))) / on(model) group_left sum(up) > 1e3 and bool pareto_y'
    )
    assert promql_metric_names(expr) == {"pareto_x_bucket", "up", "pareto_y"}


def test_dashboard_is_well_formed(dashboard):
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "job", "model", "variant"} <= variables
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"
            assert all(t["refId"] and t["expr"] for t in panel["targets"])


def test_dashboard_shows_what_operators_need(dashboard):
    exprs = dashboard_exprs(dashboard)
    used = set().union(*(promql_metric_names(e) for e in exprs))
    assert {
        "pareto_inference_request_duration_seconds_bucket",  # latency p50/p99 per variant
        "pareto_variant_traffic_weight",  # traffic split
        "pareto_model_memory_bytes",  # memory per variant
        "pareto_jobs",  # job queue
        "pareto_rollbacks_total",  # rollbacks
    } <= used
    latency = [e for e in exprs if "pareto_inference_request_duration_seconds_bucket" in e]
    assert any(e.startswith("histogram_quantile(0.5,") for e in latency)
    assert any(e.startswith("histogram_quantile(0.99,") for e in latency)
    assert all("by (model, variant, le)" in e for e in latency)


def test_dashboard_reads_only_metrics_the_gateway_exports(dashboard, known_metrics):
    assert queries_reading_unknown_metrics(dashboard, known_metrics) == {}


def test_dashboard_queries_are_valid_promql(dashboard, tmp_path: Path):
    # promtool parses every query as a recording rule (Grafana variables substituted).
    rules = [
        {"record": f"pareto:dashboard_query_{i}", "expr": grafana_to_promql(e)}
        for i, e in enumerate(dashboard_exprs(dashboard))
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(tool("promtool"), "check", "rules", str(path))
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
