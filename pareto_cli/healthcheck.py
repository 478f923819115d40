"""`python -m pareto_cli.healthcheck`: a grpc_health_probe for the container HEALTHCHECK.

Calls grpc.health.v1.Health/Check on the gateway and exits 0 when the answer is SERVING,
1 otherwise (NOT_SERVING, e.g. while the server drains; unreachable; deadline exceeded;
unknown service). Kubernetes does not need it (its native `grpc:` probe speaks the same
protocol); Docker's HEALTHCHECK can only run a command, hence this one. It imports only
grpcio and grpcio-health-checking, so a probe every few seconds stays cheap.
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def default_address() -> str:
    """PARETO_HEALTHCHECK_ADDRESS, else the local gRPC port (PARETO_PORT, default 8001)."""
    explicit = os.environ.get("PARETO_HEALTHCHECK_ADDRESS", "")
    return explicit or f"127.0.0.1:{os.environ.get('PARETO_PORT', '8001')}"


def check(address: str, service: str = "", timeout_s: float = 3.0) -> tuple[bool, str]:
    """(serving?, what was seen) for one Health/Check call."""
    with grpc.insecure_channel(address) as channel:
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
