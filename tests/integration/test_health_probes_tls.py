"""Health probes when the gRPC port speaks TLS or mTLS: the plaintext health-only port
(PARETO_HEALTH_PORT, for the kubelet's native gRPC probes) and the container's probe
(`python -m pareto_cli.healthcheck`, run in a subprocess with the server's environment)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pareto.v1 import models_pb2, models_pb2_grpc
from service.server import GatewayServer
from tests.helpers.certs import Pem, make_pki
from tests.helpers.gateway_settings import make_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Pem]:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _server_env(pki: dict[str, Pem], mtls: bool) -> dict[str, str]:
    """The TLS part of the server's environment, as a pod would have it."""
    env = {"PARETO_TLS_CERT_FILE": str(pki["server"].cert)}
    env["PARETO_TLS_KEY_FILE"] = str(pki["server"].key)
    if mtls:
        env["PARETO_TLS_CLIENT_CA_FILE"] = str(pki["ca"].cert)
    return env


def _gateway(root: Path, pki: dict[str, Pem], mtls: bool) -> GatewayServer:
    tls = {k.removeprefix("PARETO_").lower(): v for k, v in _server_env(pki, mtls).items()}
    gateway = GatewayServer(make_settings(root / "data", health_port=0, **tls))
    gateway.start()
    return gateway


@pytest.fixture(scope="module")
def tls_gateway(tmp_path_factory, pki) -> Iterator[GatewayServer]:
    gateway = _gateway(tmp_path_factory.mktemp("tls"), pki, mtls=False)
    yield gateway
    gateway.stop(grace=1.0)


@pytest.fixture(scope="module")
def mtls_gateway(tmp_path_factory, pki) -> Iterator[GatewayServer]:
    gateway = _gateway(tmp_path_factory.mktemp("mtls"), pki, mtls=True)
    yield gateway
    gateway.stop(grace=1.0)


def probe(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PARETO_")}
    return subprocess.run(
        [sys.executable, "-m", "pareto_cli.healthcheck", "--timeout", "5"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_health_port_answers_in_plaintext_for_every_service(tls_gateway):
    with grpc.insecure_channel(f"127.0.0.1:{tls_gateway.health_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_health_port_carries_nothing_but_health(tls_gateway):
    with grpc.insecure_channel(f"127.0.0.1:{tls_gateway.health_port}") as channel:
        stub = models_pb2_grpc.ModelServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.ListModels(models_pb2.ListModelsRequest(), timeout=5)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_probe_uses_the_health_port_when_set(tls_gateway, pki):
    env = {**_server_env(pki, mtls=False), "PARETO_HEALTH_PORT": str(tls_gateway.health_port)}
    result = probe(env)
    assert result.returncode == 0, result.stderr
    assert f"127.0.0.1:{tls_gateway.health_port}" in result.stdout


def test_probe_speaks_tls_to_a_tls_port(tls_gateway, pki):
    env = {**_server_env(pki, mtls=False), "PARETO_PORT": str(tls_gateway.port)}
    env["PARETO_HEALTHCHECK_CA_FILE"] = str(pki["ca"].cert)
    result = probe(env)
    assert result.returncode == 0, result.stderr


def test_probe_trusts_the_servers_own_certificate_by_default(tls_gateway, pki):
    env = {**_server_env(pki, mtls=False), "PARETO_PORT": str(tls_gateway.port)}
    result = probe(env)
    assert result.returncode == 0, result.stderr


def test_probe_refuses_a_server_its_ca_did_not_sign(tls_gateway, pki):
    env = {**_server_env(pki, mtls=False), "PARETO_PORT": str(tls_gateway.port)}
    env["PARETO_HEALTHCHECK_CA_FILE"] = str(pki["other_ca"].cert)
    result = probe(env)
    assert result.returncode == 1
    assert "UNAVAILABLE" in result.stderr


def test_plaintext_probe_of_a_tls_port_fails(tls_gateway):
    result = probe({"PARETO_PORT": str(tls_gateway.port)})
    assert result.returncode == 1


def test_probe_presents_a_client_certificate_under_mtls(mtls_gateway, pki):
    env = {**_server_env(pki, mtls=True), "PARETO_PORT": str(mtls_gateway.port)}
    env["PARETO_HEALTHCHECK_CA_FILE"] = str(pki["ca"].cert)
    env["PARETO_HEALTHCHECK_CERT_FILE"] = str(pki["client"].cert)
    env["PARETO_HEALTHCHECK_KEY_FILE"] = str(pki["client"].key)
    assert probe(env).returncode == 0, probe(env).stderr
    without_client_cert = {**env, "PARETO_TLS_CLIENT_CA_FILE": ""}
    assert probe(without_client_cert).returncode == 1
