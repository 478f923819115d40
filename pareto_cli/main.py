"""The `pareto` command: client commands talk to a gateway over gRPC."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import grpc
from rich.console import Console
from rich.table import Table

from pareto_cli.client import FORMAT_NAMES, ParetoClient
from pareto_cli.config import config
from pareto_cli.datasets import datasets
from pareto_cli.deploy import deploy
from pareto_cli.export import export
from pareto_cli.frontier import frontier
from pareto_cli.hf_folder import HF_TASKS
from pareto_cli.infer import infer
from pareto_cli.jobs import compress, jobs
from pareto_cli.options import server_option, to_dict
from pareto_cli.progress import upload_progress
from pareto_cli.report import report
from pareto_cli.runtimes import runtimes
from pareto_cli.search import search
from pareto_cli.serve import serve
from pareto_cli.variants import variants


class GrpcErrors(click.Group):
    """Turns gRPC errors into one readable line and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except grpc.RpcError as exc:
            click.echo(f"error: {exc.code().name}: {exc.details()}", err=True)
            sys.exit(1)


@click.group(cls=GrpcErrors)
def cli() -> None:
    """Pareto: a model-compression gateway."""


@cli.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--name", required=True, help="Model name (also the KServe v2 model name).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(sorted(FORMAT_NAMES)),
    default=None,
    help="Default: from the file suffix.",
)
@click.option("--description", default="")
@click.option("--label", "labels", multiple=True, help="key=value, repeatable.")
@click.option("--new-version", is_flag=True, help="Add a version if the name exists.")
@click.option(
    "--task",
    type=click.Choice(HF_TASKS),
    default=None,
    help="Hugging Face folders: the export's task (default: from the folder).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the stored model as JSON.")
@server_option
def upload(path, name, fmt, description, labels, new_version, task, as_json, server) -> None:
    """Upload a model: a file (.onnx, .zip/.tar bundle with external data, .pt2), or a
    Hugging Face folder (a directory, or a .zip/.tar of one), exported to ONNX at upload."""
    label_map = dict(_split_pair(item, "--label") for item in labels)
    with ParetoClient(server) as client, upload_progress(path, name) as advance:
        model = client.upload(
            path, name, fmt, description, label_map, new_version, advance, task=task or ""
        )
    if as_json:
        click.echo(json.dumps(to_dict(model), indent=2))
    else:
        click.echo(
            f"uploaded {model.name} version {model.version} ({model.size_bytes} bytes, "
            f"sha256 {model.sha256[:12]})"
        )
        if model.HasField("source"):
            click.echo(_source_line(model))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@server_option
def models(as_json: bool, server: str) -> None:
    """List uploaded models."""
    with ParetoClient(server) as client:
        records = client.list_models()
    if as_json:
        click.echo(json.dumps([to_dict(m) for m in records], indent=2))
        return
    table = Table("name", "version", "format", "size", "inputs", "outputs", "source", "created")
    for m in records:
        table.add_row(
            m.name,
            str(m.version),
            _format_name(m.format),
            f"{m.size_bytes / 1e6:.2f} MB",
            _specs(m.inputs),
            _specs(m.outputs),
            _source_cell(m),
            m.created_at.ToDatetime().strftime("%F %T"),
        )
    Console().print(table)


def _source_line(model) -> str:
    source = model.source
    text = (
        f", text input {model.text_input!r} ({source.max_tokens} tokens)"
        if model.text_input
        else ""
    )
    return (
        f"from a Hugging Face folder: {source.architecture}, task {source.task}, exported by "
        f"{source.exporter}; max abs diff vs torch {source.export_max_abs_diff:.3g}{text}"
    )


def _specs(specs) -> str:
    return "\n".join(f"{t.name} {t.datatype}[{','.join(map(str, t.shape))}]" for t in specs)


def _source_cell(m) -> str:
    if not m.HasField("source"):
        return ""
    s = m.source
    return f"{s.architecture} {s.task}\nexport diff {s.export_max_abs_diff:.2g}"


def _format_name(value: int) -> str:
    return {v: k for k, v in FORMAT_NAMES.items()}.get(value, "unknown")


def _split_pair(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"expected key=value, got {text!r}", param_hint=option)
    return key, value


COMMANDS = (
    serve,
    infer,
    config,
    datasets,
    compress,
    jobs,
    variants,
    runtimes,
    export,
    deploy,
    report,
    search,
    frontier,
)
for command in COMMANDS:
    cli.add_command(command)

if __name__ == "__main__":
    cli()
