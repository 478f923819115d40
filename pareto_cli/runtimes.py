"""`pareto runtimes [--json]`: the runtimes of the gateway's host and whether each is usable."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from pareto.v1 import runtimes_pb2
from pareto_cli.client import ParetoClient
from pareto_cli.options import json_option, server_option, to_dict


def list_runtimes(server: str) -> list[runtimes_pb2.Runtime]:
    with ParetoClient(server) as client:
        return list(client.runtimes.ListRuntimes(runtimes_pb2.ListRuntimesRequest()).runtimes)


@click.command()
@json_option
@server_option
def runtimes(as_json: bool, server: str) -> None:
    """List runtimes: formats, device actually used, and what is missing when unavailable."""
    found = list_runtimes(server)
    if as_json:
        click.echo(json.dumps([to_dict(r) for r in found], indent=2))
        return
    table = Table("runtime", "available", "device", "accelerated", "version", "formats")
    for r in found:
        table.add_row(
            r.name,
            "yes" if r.available else f"no: {r.unavailable_reason}",
            r.device or "-",
            "yes" if r.accelerated else "no",
            r.version or "-",
            ", ".join(r.formats),
        )
    Console().print(table)
