"""`pareto datasets`: upload, list and delete the .npz datasets compression jobs use."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from pareto.v1 import datasets_pb2
from pareto_cli.client import ParetoClient, sha256_of, stream_file
from pareto_cli.options import json_option, server_option, to_dict
from pareto_cli.progress import upload_progress


def upload_dataset(
    client: ParetoClient,
    path: Path,
    name: str,
    description: str = "",
    progress: Callable[[int], None] | None = None,
) -> datasets_pb2.Dataset:
    """Stream a .npz file in chunks; `progress(n)` is called with each chunk's size."""
    path = Path(path)
    header = datasets_pb2.DatasetHeader(
        name=name,
        size_bytes=path.stat().st_size,
        sha256=sha256_of(path),
        description=description,
    )
    messages = stream_file(
        path,
        datasets_pb2.UploadDatasetRequest(header=header),
        lambda chunk: datasets_pb2.UploadDatasetRequest(chunk=chunk),
        progress,
    )
    return client.datasets.UploadDataset(messages)


def _list(server: str, as_json: bool) -> None:
    with ParetoClient(server) as client:
        found = client.datasets.ListDatasets(datasets_pb2.ListDatasetsRequest()).datasets
    if as_json:
        click.echo(json.dumps([to_dict(d) for d in found], indent=2))
        return
    table = Table("name", "samples", "labels", "arrays", "size", "created", "description")
    for d in found:
        table.add_row(
            d.name,
            str(d.num_samples),
            "yes" if d.has_labels else "no",
            "\n".join(f"{a.name} {a.datatype}[{','.join(map(str, a.shape))}]" for a in d.arrays),
            f"{d.size_bytes / 1e6:.2f} MB",
            d.created_at.ToDatetime().strftime("%F %T"),
            d.description,
        )
    Console().print(table)


@click.group(invoke_without_command=True)
@json_option
@server_option
@click.pass_context
def datasets(ctx: click.Context, as_json: bool, server: str) -> None:
    """List datasets (same as `datasets list`); `upload` and `delete` manage them."""
    if ctx.invoked_subcommand is None:
        _list(server, as_json)


@datasets.command("list")
@json_option
@server_option
def list_(as_json: bool, server: str) -> None:
    """List datasets: name, samples, labels, arrays (name, datatype, shape)."""
    _list(server, as_json)


@datasets.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Dataset name, used in job requests.")
@click.option("--description", default="")
@json_option
@server_option
def upload(path: Path, name: str, description: str, as_json: bool, server: str) -> None:
    """Upload a .npz of input arrays named like the model's inputs, plus optional `labels`."""
    with ParetoClient(server) as client, upload_progress(path, name) as advance:
        dataset = upload_dataset(client, path, name, description, advance)
    if as_json:
        click.echo(json.dumps(to_dict(dataset), indent=2))
        return
    arrays = ", ".join(a.name for a in dataset.arrays)
    click.echo(
        f"uploaded dataset {dataset.name}: {dataset.num_samples} samples ({arrays}), "
        f"{dataset.size_bytes} bytes, sha256 {dataset.sha256[:12]}"
    )


@datasets.command()
@click.argument("name")
@server_option
def delete(name: str, server: str) -> None:
    """Delete a dataset (refused while a queued or running job uses it)."""
    with ParetoClient(server) as client:
        client.datasets.DeleteDataset(datasets_pb2.DeleteDatasetRequest(name=name))
    click.echo(f"deleted dataset {name}")
