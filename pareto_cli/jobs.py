"""`pareto compress` and `pareto jobs`: create, follow, list and cancel compression jobs.

A recipe file (YAML) holds the CreateJob request without the model:

    recipes:                      # alternatives; each yields one variant
      - name: int8                # optional, default: the techniques joined by "+"
        steps:
          - technique: quantize.dynamic
            config: {per_channel: true}
    datasets: {calibration: digits-calib}     # role -> dataset name
    quality_budget: {max_accuracy_drop: 0.01}
    evaluation: {batch_sizes: [1, 8], iterations: 50, runtime: onnxruntime_cpu}

A top-level `steps:` list (with an optional `name:`) is the same as one recipe.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import grpc
from google.protobuf.json_format import ParseDict, ParseError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pareto.v1 import jobs_pb2, variants_pb2
from pareto_cli.client import ParetoClient
from pareto_cli.options import server_option, to_dict
from pareto_cli.variants import variants_table

RECIPE_FILE_KEYS = ("recipes", "steps", "name", "datasets", "quality_budget", "evaluation")
STATE_PREFIX = "JOB_STATE_"


def load_recipe_file(path: Path) -> jobs_pb2.CreateJobRequest:
    """The CreateJobRequest (model unset) a recipe file describes; ClickException if bad."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise click.ClickException(f"{path}: cannot read YAML: {exc}") from None
    if not isinstance(data, dict):
        raise click.ClickException(f"{path}: expected a mapping at the top level")
    unknown = sorted(set(data) - set(RECIPE_FILE_KEYS))
    if unknown:
        raise click.ClickException(
            f"{path}: unknown keys {unknown}; expected some of {list(RECIPE_FILE_KEYS)}"
        )
    if "steps" in data and "recipes" in data:
        raise click.ClickException(f"{path}: give either `steps` (one recipe) or `recipes`")
    request = {
        k: data[k] for k in ("recipes", "datasets", "quality_budget", "evaluation") if k in data
    }
    if "steps" in data:
        request["recipes"] = [{"name": data.get("name", ""), "steps": data["steps"]}]
    try:
        return ParseDict(request, jobs_pb2.CreateJobRequest())
    except ParseError as exc:
        raise click.ClickException(f"{path}: {exc}") from None


@click.command()
@click.argument("model")
@click.option(
    "--recipe",
    "recipe_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML recipe file (see examples/recipes/).",
)
@click.option("--version", "model_version", type=int, default=0, help="Model version (0 = latest).")
@click.option("--wait", is_flag=True, help="Follow the job's progress until it ends.")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@server_option
def compress(model, recipe_path, model_version, wait, as_json, server) -> None:
    """Start a compression job for MODEL with the recipes of a YAML file."""
    request = load_recipe_file(recipe_path)
    request.model = model
    request.model_version = model_version
    with ParetoClient(server) as client:
        job = client.jobs.CreateJob(request)
        if not wait:
            _echo_job(job, as_json)
            return
        click.echo(f"job {job.id} created for {job.model} version {job.model_version}", err=True)
        follow(client, job.id)
        job = client.jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id))
        _echo_job(job, as_json)
        if not as_json:
            _print_variants(client, list(job.variant_ids))
    if job.state != jobs_pb2.JOB_STATE_SUCCEEDED:
        sys.exit(1)


def follow(client: ParetoClient, job_id: str) -> None:
    """Stream the job's events: a progress bar on a terminal, event lines otherwise."""
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    )
    with progress:
        task = progress.add_task(job_id, total=100)
        for event in client.jobs.WatchJob(jobs_pb2.WatchJobRequest(id=job_id)):
            progress.update(task, completed=event.percent, description=f"{job_id} {event.step}")
            line = event_line(event)
            if progress.disable:
                click.echo(line, err=True)
            else:
                progress.console.print(line, markup=False, highlight=False)


def event_line(event: jobs_pb2.JobEvent) -> str:
    metrics = " ".join(f"{k}={v:.4g}" for k, v in sorted(event.metrics.items()))
    parts = [
        f"[{event.percent:5.1f}%]",
        state_name(event.state),
        event.step,
        event.message,
        metrics,
    ]
    return " ".join(p for p in parts if p)


def state_name(state: int) -> str:
    return jobs_pb2.JobState.Name(state).removeprefix(STATE_PREFIX)


def _echo_job(job: jobs_pb2.Job, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(to_dict(job), indent=2))
        return
    line = f"job {job.id}: {state_name(job.state)} ({job.percent:.0f}%)"
    if job.reason:
        line += f": {job.reason}"
    click.echo(line)


def _print_variants(client: ParetoClient, variant_ids: list[str]) -> None:
    try:
        variants = [
            client.variants.GetVariant(variants_pb2.GetVariantRequest(id=v)) for v in variant_ids
        ]
    except grpc.RpcError as exc:
        click.echo(f"variants: {', '.join(variant_ids)} (details unavailable: {exc.details()})")
        return
    if not variants:
        return
    Console().print(variants_table(variants))


@click.group(invoke_without_command=True)
@click.option("--model", default="", help="Only jobs of this model.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@server_option
@click.pass_context
def jobs(ctx: click.Context, model: str, as_json: bool, server: str) -> None:
    """List compression jobs (newest first); `show` and `cancel` act on one."""
    if ctx.invoked_subcommand is not None:
        return
    with ParetoClient(server) as client:
        found = client.jobs.ListJobs(jobs_pb2.ListJobsRequest(model=model)).jobs
    if as_json:
        click.echo(json.dumps([to_dict(j) for j in found], indent=2))
        return
    table = Table()
    for column in ("id", "model", "state", "progress"):
        table.add_column(column, no_wrap=True)
    for column in ("recipes", "variants", "created", "reason"):
        table.add_column(column)
    for j in found:
        table.add_row(
            j.id,
            f"{j.model}:{j.model_version}",
            state_name(j.state),
            f"{j.percent:.0f}%",
            "\n".join(r.name for r in j.recipes),
            str(len(j.variant_ids)),
            j.created_at.ToDatetime().strftime("%F %T"),
            j.reason[:80],
        )
    Console().print(table)


@jobs.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@server_option
def show(job_id: str, as_json: bool, server: str) -> None:
    """Show one job: state, reason, recipes, variants."""
    with ParetoClient(server) as client:
        job = client.jobs.GetJob(jobs_pb2.GetJobRequest(id=job_id))
    if as_json:
        click.echo(json.dumps(to_dict(job), indent=2))
        return
    _echo_job(job, as_json=False)
    click.echo(f"model: {job.model} version {job.model_version}")
    for r in job.recipes:
        click.echo(f"recipe {r.name}: " + " -> ".join(s.technique for s in r.steps))
    for role, name in sorted(job.datasets.items()):
        click.echo(f"dataset {role}: {name}")
    click.echo(f"attempts: {job.attempts}; variants: {', '.join(job.variant_ids) or '-'}")


@jobs.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@server_option
def cancel(job_id: str, as_json: bool, server: str) -> None:
    """Cancel a queued or running job."""
    with ParetoClient(server) as client:
        job = client.jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job_id))
    _echo_job(job, as_json)
