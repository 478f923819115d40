"""Auth and TLS on the REST port: the same tokens and scopes as gRPC (health open), HTTPS
and mutual TLS from the same settings, with tritonclient.http and curl."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gevent.ssl
import numpy as np
import pytest
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from pareto_cli.client import ParetoClient
from pareto_cli.connection import Connection
from service.server import GatewayServer
from tests.helpers.certs import Pem, make_pki
from tests.helpers.gateway_settings import make_settings
from tests.helpers.rest import curl, curl_exit_code, http_infer
from tests.helpers.tiny_model import WEIGHT, tiny_model_bytes, upload_messages

TOKENS = {
    "reader": "read-token-0123456789",
    "caller": "infer-token-0123456789",
    "boss": "admin-token-0123456789",
}
TOKENS_FILE = "".join(
    f"{name} {scope} {TOKENS[name]}\n"
    for name, scope in (("reader", "read"), ("caller", "infer"), ("boss", "admin"))
)
X = np.ones((2, 4), np.float32)
N = np.arange(8, dtype=np.int64).reshape(2, 4)


def upload_tiny(port: int, token: str = "", ca_file: str = "") -> None:
    with ParetoClient(f"localhost:{port}", connection=Connection(token, ca_file=ca_file)) as client:
        client.models.UploadModel(iter(upload_messages("tiny", tiny_model_bytes())))


@pytest.fixture(scope="module")
def auth_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("rest-auth")
    (root / "tokens").write_text(TOKENS_FILE)
    gateway = GatewayServer(make_settings(root / "data", auth_tokens_file=root / "tokens"))
    gateway.start()
    upload_tiny(gateway.port, TOKENS["boss"])
    yield f"http://127.0.0.1:{gateway.http_port}"
    gateway.stop(grace=1.0)


def bearer(who: str) -> tuple[str, str]:
    return ("-H", f"Authorization: Bearer {TOKENS[who]}")


@pytest.mark.parametrize("path", ["/v2/health/live", "/v2/health/ready"])
def test_health_needs_no_token(auth_url, path):
    assert curl(auth_url + path).status == 200


@pytest.mark.parametrize(
    "header", [None, "Authorization: Bearer wrong-token-0123456789", "Authorization: Basic abc"]
)
def test_missing_or_bad_token_is_401(auth_url, header):
    args = ("-H", header) if header else ()
    for path in ("/v2", "/v2/models/tiny", "/v2/models/nope/ready", "/v2/no/such/route"):
        answer = curl(auth_url + path, *args)
        assert answer.status == 401, path
        assert answer.json() == {
            "error": "missing or invalid bearer token (header 'authorization: Bearer ...')"
        }


@pytest.mark.parametrize(
    ("who", "path", "post", "status"),
    [
        ("reader", "/v2/models/tiny", False, 403),  # ModelMetadata needs infer
        ("caller", "/v2/models/tiny", False, 200),
        ("caller", "/v2/repository/index", True, 403),  # RepositoryIndex needs read
        ("reader", "/v2/repository/index", True, 200),
        ("reader", "/v2/repository/models/tiny/load", True, 403),  # admin
        ("caller", "/v2/repository/models/tiny/load", True, 403),
        ("boss", "/v2/repository/models/tiny/load", True, 200),
        ("reader", "/v2/models/tiny/config", False, 403),  # ModelConfig needs infer
        ("caller", "/v2/models/tiny/config", False, 200),
        ("caller", "/v2/models/tiny/stats", False, 403),  # ModelStatistics needs read
        ("reader", "/v2/models/tiny/stats", False, 200),
    ],
)
def test_scopes_are_grpcs(auth_url, who, path, post, status):
    args = [*bearer(who), *(["-X", "POST"] if post else [])]
    answer = curl(auth_url + path, *args)
    assert answer.status == status, answer.body
    if status == 403:
        assert "scope this call needs" in answer.json()["error"]


def test_tritonclient_http_with_a_token(auth_url):
    client = th.InferenceServerClient(auth_url.removeprefix("http://"))
    headers = {"Authorization": f"Bearer {TOKENS['caller']}"}
    try:
        result = http_infer(client, "tiny", {"x": X, "n": N}, binary=True, headers=headers)
        np.testing.assert_array_equal(result.as_numpy("y"), X @ WEIGHT)
        with pytest.raises(InferenceServerException) as err:
            http_infer(client, "tiny", {"x": X, "n": N}, binary=True)
        assert err.value.status() == "401"
        reader = {"Authorization": f"Bearer {TOKENS['reader']}"}
        with pytest.raises(InferenceServerException) as err:
            http_infer(client, "tiny", {"x": X, "n": N}, binary=True, headers=reader)
        assert err.value.status() == "403"
    finally:
        client.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Pem]:
    return make_pki(tmp_path_factory.mktemp("rest-pki"))


def _tls_gateway(root: Path, pki: dict[str, Pem], mtls: bool) -> GatewayServer:
    tls = {"tls_cert_file": pki["server"].cert, "tls_key_file": pki["server"].key}
    if mtls:
        tls["tls_client_ca_file"] = pki["ca"].cert
    gateway = GatewayServer(make_settings(root / "data", measure_memory=False, **tls))
    gateway.start()
    return gateway


def test_https_with_the_same_certificate(tmp_path, pki):
    gateway = _tls_gateway(tmp_path, pki, mtls=False)
    try:
        upload_tiny(gateway.port, ca_file=str(pki["ca"].cert))
        url = f"https://localhost:{gateway.http_port}"
        assert curl(url + "/v2/health/ready", "--cacert", str(pki["ca"].cert)).status == 200
        assert curl_exit_code(f"http://localhost:{gateway.http_port}/v2/health/ready") != 0
        assert curl_exit_code(url + "/v2/health/ready") != 0  # not trusted without the CA
        client = th.InferenceServerClient(
            f"localhost:{gateway.http_port}",
            ssl=True,
            ssl_options={"ca_certs": str(pki["ca"].cert)},
            ssl_context_factory=gevent.ssl.create_default_context,
        )
        try:
            result = http_infer(client, "tiny", {"x": X, "n": N}, binary=False)
            np.testing.assert_array_equal(result.as_numpy("m"), N + N)
        finally:
            client.close()
    finally:
        gateway.stop(grace=1.0)


def test_mtls_requires_a_client_certificate_from_the_ca(tmp_path, pki):
    gateway = _tls_gateway(tmp_path, pki, mtls=True)
    try:
        url = f"https://localhost:{gateway.http_port}/v2/health/live"
        ca = ("--cacert", str(pki["ca"].cert))
        client, stranger = pki["client"], pki["stranger"]
        assert curl(url, *ca, "--cert", str(client.cert), "--key", str(client.key)).status == 200
        assert curl_exit_code(url, *ca) != 0
        assert curl_exit_code(url, *ca, "--cert", str(stranger.cert), "--key", str(stranger.key))
    finally:
        gateway.stop(grace=1.0)
