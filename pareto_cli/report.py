"""`pareto report NAME`: a deployment's per-target comparison from the gateway's own
counters, or (for a model with no deployment of that name, or with --frontier) the
frontier of its latest search (see pareto_cli/search.py).

Requests, error rate, p50/p99 latency with 95% confidence intervals, agreement from
comparisons (shadow copies, canary checks), and whether latency and error rate differ
significantly from the baseline (the tests are named under the table).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import grpc
from rich.console import Console
from rich.table import Table

from pareto.v1 import deployments_pb2 as pb
from pareto_cli.client import ParetoClient
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


def show_deployment_report(result: pb.DeploymentReport, as_json: bool) -> None:
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


@click.command()
@click.argument("name")
@click.option("--frontier", is_flag=True, help="The search frontier of model NAME.")
@click.option("--search", "job_id", default="", help="A search job id (default: the latest).")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the frontier plot (PNG).",
)
@click.option("--all", "show_all", is_flag=True, help="List every trial of the search.")
@json_option
@server_option
def report(
    name: str,
    frontier: bool,
    job_id: str,
    plot: Path | None,
    show_all: bool,
    as_json: bool,
    server: str,
) -> None:
    """Report on NAME: a deployment's targets compared from the server's counters, or
    (when NAME has no deployment, or with --frontier, --search, --plot) model NAME's search
    frontier: trials, measurements, the recommended variant."""
    from pareto_cli.search import get_search, show_result

    searching = frontier or bool(job_id) or plot is not None
    with ParetoClient(server) as client:
        if not searching:
            request = pb.GetDeploymentReportRequest(name=name)
            try:
                show_deployment_report(client.deployments.GetDeploymentReport(request), as_json)
                return
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
        try:
            result = get_search(client, name, job_id)
        except grpc.RpcError as exc:
            if searching or exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            raise click.ClickException(
                f"{name!r} is neither a deployment nor a model with a search"
            ) from None
    show_result(result, as_json, plot, show_all)
