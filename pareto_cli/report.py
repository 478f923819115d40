"""`pareto report ENDPOINT`: per-target comparison from the gateway's own counters.

Requests, error rate, p50/p99 latency with 95% confidence intervals, agreement from
comparisons (shadow copies, canary checks), and whether latency and error rate differ
significantly from the baseline (the tests are named under the table).
"""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from pareto.v1 import deployments_pb2 as pb
from pareto_cli.deploy import deployment_stub
from pareto_cli.options import json_option, server_option, to_dict


def _estimate(e: pb.Estimate, present: bool) -> str:
    """The estimate and its 95% confidence interval."""
    return f"{e.value:.3g} [{e.low:.3g}, {e.high:.3g}]" if present else "-"


def _test(test: pb.Comparison, present: bool) -> str:
    if not present:
        return "(baseline)"
    return f"p={test.p_value:.2g}, " + ("differs" if test.significant else "same")


def _rows(t: pb.TargetReport) -> list[str]:
    """One column of the table: every measure of target `t`."""
    role = pb.Role.Name(t.role).removeprefix("ROLE_").lower()
    compared = t.comparisons > 0
    return [
        role if t.role == pb.ROLE_SHADOW else f"{role} {t.weight:g}%",
        t.runtime,
        str(t.requests),
        f"{t.error_rate:.2%} ({t.errors})",
        _estimate(t.p50_ms, t.HasField("p50_ms")),
        _estimate(t.p99_ms, t.HasField("p99_ms")),
        f"{t.cosine_mean:.4f}" if compared else "-",
        f"{t.top1_agreement:.2%}" if compared else "-",
        f"{t.max_abs_diff:.3g}" if compared else "-",
        f"{t.comparisons}, {t.shadow_dropped}",
        _test(t.latency_test, t.HasField("latency_test")),
        _test(t.error_test, t.HasField("error_test")),
    ]


MEASURES = (
    "role",
    "runtime",
    "requests",
    "error rate",
    "p50 ms [95% CI]",
    "p99 ms [95% CI]",
    "cosine",
    "top-1 agreement",
    "max |diff|",
    "compared, dropped",
    "latency test",
    "error test",
)


def report_table(report: pb.DeploymentReport) -> Table:
    """Measures down, targets across: side by side, as they are compared."""
    table = Table(title=f"{report.name}: every target against the baseline {report.baseline!r}")
    table.add_column("", no_wrap=True)
    columns = [_rows(t) for t in report.targets]
    for t in report.targets:
        same = t.variant in (t.target, f"v{t.target}")
        table.add_column(t.target if same else f"{t.target} ({t.variant})")
    for i, measure in enumerate(MEASURES):
        table.add_row(measure, *(column[i] for column in columns))
    return table


@click.command()
@click.argument("endpoint")
@json_option
@server_option
def report(endpoint: str, as_json: bool, server: str) -> None:
    """Compare the targets of ENDPOINT from the server's counters."""
    with deployment_stub(server) as stub:
        result = stub.GetDeploymentReport(pb.GetDeploymentReportRequest(name=endpoint))
    if as_json:
        click.echo(json.dumps(to_dict(result), indent=2))
        return
    console = Console()
    console.print(report_table(result))
    console.print(
        f"[dim]{result.method}. Agreement: answers to the same requests compared "
        "with another target (shadow copies, canary checks).[/]"
    )
    if result.HasField("canary_status") and result.canary_status.reason:
        state = pb.CanaryState.Name(result.canary_status.state).removeprefix("CANARY_STATE_")
        console.print(f"canary: {state}: {result.canary_status.reason}")
