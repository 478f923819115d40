"""Options and helpers shared by the `pareto` client commands."""

from __future__ import annotations

from typing import Any

import click
from google.protobuf.json_format import MessageToDict

from pareto_cli.connection import connection_options

_address_option = click.option(
    "--server",
    envvar="PARETO_SERVER",
    default="127.0.0.1:8001",
    show_default=True,
    help="Gateway address host:port (env PARETO_SERVER).",
)


def server_option(command: Any) -> Any:
    """--server plus --token and the TLS options (pareto_cli/connection.py)."""
    return _address_option(connection_options(command))


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def to_dict(message: Any) -> dict:
    """A protobuf message as JSON-ready dict with the .proto field names."""
    return MessageToDict(message, preserving_proto_field_name=True)
