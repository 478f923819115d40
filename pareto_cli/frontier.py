"""`pareto frontier MODEL`: a search's frontier as a table or plot; `--deploy-best` puts the
recommended variant (or, with --max-drop, the best on the primary objective within that
quality drop) behind MODEL's endpoint as a canary against the searched version, with the
deployment's canary plan (steps, SLOs, automatic rollback: pareto_cli/deploy.py).

  pareto frontier digits --plot digits.png
  pareto frontier digits --deploy-best --max-drop 0.5% --steps 5,50,100 --max-p99-ratio 1.2
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import grpc

from pareto.v1 import deployments_pb2, jobs_pb2
from pareto_cli.client import ParetoClient
from pareto_cli.deploy import canary_options, canary_plan, show_deployment
from pareto_cli.options import json_option, server_option
from pareto_cli.search import get_search, parse_fraction, show_result


def pick(result: jobs_pb2.SearchResult, max_drop: float | None) -> jobs_pb2.SearchTrial:
    """The recommended frontier trial, or with `max_drop` the best on the primary objective
    whose quality drop stays within it (the frontier is listed in that order)."""
    by_number = {t.number: t for t in result.trials}
    for number in result.frontier:
        trial = by_number[number]
        if trial.variant_id and (max_drop is None or trial.metrics.quality_drop <= max_drop):
            return trial
    limit = "" if max_drop is None else f" with a quality drop <= {max_drop:g}"
    raise click.ClickException(f"no stored frontier variant of {result.model}{limit}")


def deploy_canary(
    client: ParetoClient,
    result: jobs_pb2.SearchResult,
    variant: str,
    endpoint: str,
    options: dict[str, Any],
) -> deployments_pb2.Deployment:
    """A canary of `variant` against the searched version, on a new deployment."""
    try:
        current = client.deployments.GetDeployment(
            deployments_pb2.GetDeploymentRequest(name=endpoint)
        )
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
    else:
        raise click.ClickException(
            f"endpoint {endpoint!r} already has a deployment (revision {current.revision}); "
            f"delete it (pareto deploy delete {endpoint}) or pick another with --endpoint"
        )
    request = deployments_pb2.CreateDeploymentRequest(name=endpoint, model=result.model)
    request.targets.add(model_version=str(result.model_version))
    request.targets.add(model_version=variant)
    request.canary.CopyFrom(canary_plan({**options, "canary": variant}))
    return client.deployments.CreateDeployment(request)


def with_options(options: list[Any]) -> Any:
    def wrap(command: Any) -> Any:
        for option in reversed(options):
            command = option(command)
        return command

    return wrap


@click.command()
@click.argument("model")
@click.option("--search", "job_id", default="", help="Search job id (default: the latest).")
@click.option("--deploy-best", is_flag=True, help="Canary the best variant against MODEL.")
@click.option("--max-drop", help="With --deploy-best: largest quality drop, e.g. 1%.")
@click.option("--endpoint", default="", help="Deployment name (default: MODEL).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="Write a PNG.")
@click.option("--all", "show_all", is_flag=True, help="List every trial.")
@with_options(canary_options[1:])
@json_option
@server_option
def frontier(
    model: str,
    job_id: str,
    deploy_best: bool,
    max_drop: str | None,
    endpoint: str,
    plot: Path | None,
    show_all: bool,
    as_json: bool,
    server: str,
    **canary: Any,
) -> None:
    """Show MODEL's search frontier; --deploy-best deploys the recommended variant."""
    with ParetoClient(server) as client:
        result = get_search(client, model, job_id)
        if not deploy_best:
            show_result(result, as_json, plot, show_all)
            return
        trial = pick(result, parse_fraction(max_drop, "--max-drop"))
        deployment = deploy_canary(client, result, trial.variant_id, endpoint or model, canary)
    click.echo(
        f"canary: {trial.variant_id} (trial {trial.number}) against {model} "
        f"version {result.model_version}",
        err=True,
    )
    show_deployment(deployment, as_json)
