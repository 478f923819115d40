"""`python -m pareto_cli.healthcheck`: a grpc_health_probe for the container HEALTHCHECK.

Calls grpc.health.v1.Health/Check on the gateway and exits 0 when the answer is SERVING,
1 otherwise (NOT_SERVING, e.g. while the server drains; unreachable; deadline exceeded;
unknown service). Kubernetes does not need it (its native `grpc:` probe speaks the same
protocol); Docker's HEALTHCHECK can only run a command, hence this one. It imports only
grpcio, grpcio-health-checking and the CLI's channel builder (pareto_cli.connection), so a
probe every few seconds stays cheap.

It reads the server's own environment, so it follows the server's transport: with
PARETO_HEALTH_PORT set it asks that plaintext health-only port; else, with
PARETO_TLS_CERT_FILE set, it speaks TLS to the main port, trusting
PARETO_HEALTHCHECK_CA_FILE (default: the server's own certificate file, which gRPC
accepts as a trust anchor for that very certificate), checking the name
PARETO_HEALTHCHECK_SERVER_NAME (default: the host it dials), and, when the server asks
for client certificates (PARETO_TLS_CLIENT_CA_FILE), presenting
PARETO_HEALTHCHECK_CERT_FILE / _KEY_FILE (default: the server's own pair).
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pareto_cli.connection import Connection


def _health_port() -> int:
    """PARETO_HEALTH_PORT when it names a fixed port (-1 = off; 0 = random, unknowable)."""
    try:
        return int(os.environ.get("PARETO_HEALTH_PORT", "-1"))
    except ValueError:
        return -1


def default_address() -> str:
    """PARETO_HEALTHCHECK_ADDRESS, else the local health-only port (PARETO_HEALTH_PORT),
    else the local gRPC port (PARETO_PORT, default 8001)."""
    explicit = os.environ.get("PARETO_HEALTHCHECK_ADDRESS", "")
    if explicit:
        return explicit
    if _health_port() > 0:
        return f"127.0.0.1:{_health_port()}"
    return f"127.0.0.1:{os.environ.get('PARETO_PORT', '8001')}"


def _env(variable: str, fallback: str = "") -> str:
    """The value of `variable`, else of `fallback`, else ""."""
    return os.environ.get(variable) or os.environ.get(fallback, "")


def probe_connection() -> Connection:
    """How to reach the server, from its own TLS environment: plaintext when it has no TLS
    or the probe asks the health-only port; else TLS (with the probe's client certificate
    when the server asks for one)."""
    if _health_port() > 0 or not os.environ.get("PARETO_TLS_CERT_FILE"):
        return Connection()
    mtls = bool(os.environ.get("PARETO_TLS_CLIENT_CA_FILE"))
    return Connection(
        tls=True,
        ca_file=_env("PARETO_HEALTHCHECK_CA_FILE", "PARETO_TLS_CERT_FILE"),
        cert_file=_env("PARETO_HEALTHCHECK_CERT_FILE", "PARETO_TLS_CERT_FILE") if mtls else "",
        key_file=_env("PARETO_HEALTHCHECK_KEY_FILE", "PARETO_TLS_KEY_FILE") if mtls else "",
        server_name=os.environ.get("PARETO_HEALTHCHECK_SERVER_NAME", ""),
    )


def check(address: str, service: str = "", timeout_s: float = 3.0) -> tuple[bool, str]:
    """(serving?, what was seen) for one Health/Check call."""
    try:
        channel = probe_connection().channel(address, [])
    except OSError as exc:
        return False, f"cannot read a TLS file: {exc}"
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError as exc:
            return False, f"{exc.code().name}: {exc.details()}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return response.status == health_pb2.HealthCheckResponse.SERVING, status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pareto_cli.healthcheck")
    parser.add_argument("--address", default=None, help="host:port (default: local gRPC port)")
    parser.add_argument("--service", default="", help="service name; '' = the whole server")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds")
    args = parser.parse_args(argv)
    address = args.address or default_address()
    ok, seen = check(address, args.service, args.timeout)
    print(f"{address} {args.service or '(server)'}: {seen}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
