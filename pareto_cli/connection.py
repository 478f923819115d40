"""How a client reaches a gateway: bearer token and TLS/mTLS options.

Every client command takes `--token` (env PARETO_TOKEN), `--tls` (PARETO_TLS), `--tls-ca`
(PARETO_TLS_CA), `--tls-client-cert` / `--tls-client-key` (PARETO_TLS_CLIENT_CERT /
PARETO_TLS_CLIENT_KEY, for mTLS) and `--tls-server-name` (PARETO_TLS_SERVER_NAME). Any
TLS option turns TLS on; without `--tls-ca` the system's root certificates are used.
Outside the CLI (`ParetoClient` in scripts, benches, the demo) the same environment
variables apply.
"""

from __future__ import annotations

import os
from collections import namedtuple
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import click
import grpc

META_KEY = "pareto.connection"
ENV = {
    "token": "PARETO_TOKEN",
    "tls": "PARETO_TLS",
    "ca_file": "PARETO_TLS_CA",
    "cert_file": "PARETO_TLS_CLIENT_CERT",
    "key_file": "PARETO_TLS_CLIENT_KEY",
    "server_name": "PARETO_TLS_SERVER_NAME",
}


@dataclass(frozen=True)
class Connection:
    token: str = ""
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    server_name: str = ""

    @classmethod
    def from_env(cls) -> Connection:
        values: dict[str, Any] = {f: os.environ.get(env, "") for f, env in ENV.items()}
        values["tls"] = values["tls"].strip().lower() in ("1", "true", "yes", "on")
        return cls(**values)

    @property
    def secure(self) -> bool:
        return self.tls or bool(self.ca_file or self.cert_file or self.key_file)

    def headers(self) -> dict[str, str]:
        """Call metadata for tritonclient (`headers=`)."""
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    def channel(self, address: str, options: list[tuple[str, Any]]) -> grpc.Channel:
        options = [*options, *self._name_override()]
        if self.secure:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(self.ca_file),
                private_key=_read(self.key_file),
                certificate_chain=_read(self.cert_file),
            )
            channel = grpc.secure_channel(address, credentials, options=options)
        else:
            channel = grpc.insecure_channel(address, options=options)
        if self.token:
            channel = grpc.intercept_channel(channel, BearerToken(self.token))
        return channel

    def triton_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `tritonclient.grpc.InferenceServerClient`."""
        return {
            "ssl": self.secure,
            "root_certificates": self.ca_file or None,
            "private_key": self.key_file or None,
            "certificate_chain": self.cert_file or None,
            "channel_args": self._name_override() or None,
        }

    def _name_override(self) -> list[tuple[str, Any]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def _read(path: str) -> bytes | None:
    return Path(path).read_bytes() if path else None


class _CallDetails(
    namedtuple("_CallDetails", "method timeout metadata credentials wait_for_ready compression"),
    grpc.ClientCallDetails,
):
    pass


class BearerToken(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `authorization: Bearer <token>` to every call of a channel."""

    def __init__(self, token: str) -> None:
        self._entry = ("authorization", f"Bearer {token}")

    def _with_token(self, d: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [*(d.metadata or ()), self._entry]
        return _CallDetails(
            d.method, d.timeout, metadata, d.credentials, d.wait_for_ready, d.compression
        )

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._with_token(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._with_token(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._with_token(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._with_token(client_call_details), request_iterator)


def current_connection() -> Connection:
    """The connection options of the running `pareto` command, else from the environment."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and META_KEY in ctx.meta:
        return ctx.meta[META_KEY]
    return Connection.from_env()


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    connection = ctx.meta.get(META_KEY) or Connection()
    if value not in (None, "", False):  # not given here: keep what a parent command set
        connection = replace(connection, **{str(param.name): value})
    ctx.meta[META_KEY] = connection


def connection_options(command: Any) -> Any:
    """Adds --token and the TLS options to a click command (values land in ctx.meta)."""
    helps = {
        "token": "Bearer token (env PARETO_TOKEN).",
        "tls": "Use TLS with the system's root certificates (env PARETO_TLS).",
        "ca_file": "PEM CA that signed the server's certificate; implies TLS.",
        "cert_file": "PEM client certificate for mTLS; implies TLS.",
        "key_file": "PEM private key of --tls-client-cert.",
        "server_name": "Expected name in the server's certificate (if not the host).",
    }
    flags = {
        "token": "--token",
        "tls": "--tls",
        "ca_file": "--tls-ca",
        "cert_file": "--tls-client-cert",
        "key_file": "--tls-client-key",
        "server_name": "--tls-server-name",
    }
    for field in reversed(fields(Connection)):
        name = field.name
        command = click.option(
            flags[name],
            name,
            envvar=ENV[name],
            is_flag=name == "tls",
            default=None,
            expose_value=False,
            callback=_remember,
            help=helps[name],
        )(command)
    return command
