"""TLS and mTLS on the gRPC port, with real certificates made here and a real gateway."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tc
from click.testing import CliRunner
from tritonclient.utils import InferenceServerException

from pareto.v1 import models_pb2
from pareto_cli.client import ParetoClient
from pareto_cli.connection import Connection
from pareto_cli.main import cli
from service.server import GatewayServer
from service.settings import SettingsError, load_settings
from tests.helpers.certs import Pem, make_pki
from tests.helpers.gateway_settings import make_settings
from tests.helpers.tiny_model import WEIGHT, tiny_model_bytes, upload_messages

DEADLINE_S = 10


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Pem]:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _serve(root: Path, pki: dict[str, Pem], mtls: bool) -> GatewayServer:
    tls = {"tls_cert_file": pki["server"].cert, "tls_key_file": pki["server"].key}
    if mtls:
        tls["tls_client_ca_file"] = pki["ca"].cert
    gateway = GatewayServer(make_settings(root / "data", **tls))
    gateway.start()
    return gateway


@pytest.fixture(scope="module")
def tls_address(tmp_path_factory, pki) -> Iterator[str]:
    gateway = _serve(tmp_path_factory.mktemp("tls"), pki, mtls=False)
    yield f"127.0.0.1:{gateway.port}"
    gateway.stop(grace=1.0)


@pytest.fixture(scope="module")
def mtls_address(tmp_path_factory, pki) -> Iterator[str]:
    gateway = _serve(tmp_path_factory.mktemp("mtls"), pki, mtls=True)
    yield f"localhost:{gateway.port}"
    gateway.stop(grace=1.0)


def list_models(address: str, connection: Connection) -> list[str]:
    with ParetoClient(address, connection=connection) as c:
        request = models_pb2.ListModelsRequest()
        return [m.name for m in c.models.ListModels(request, timeout=DEADLINE_S).models]


def code_of(address: str, connection: Connection) -> grpc.StatusCode:
    try:
        list_models(address, connection)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_tls_works_and_plaintext_fails(tls_address, pki):
    assert list_models(tls_address, Connection(ca_file=str(pki["ca"].cert))) == []
    assert code_of(tls_address, Connection()) == grpc.StatusCode.UNAVAILABLE
    # A server certificate from a CA the client does not trust is refused.
    untrusted = Connection(ca_file=str(pki["other_ca"].cert))
    assert code_of(tls_address, untrusted) == grpc.StatusCode.UNAVAILABLE


def test_mtls_needs_a_client_certificate_from_the_ca(mtls_address, pki):
    ca = str(pki["ca"].cert)
    assert code_of(mtls_address, Connection(ca_file=ca)) == grpc.StatusCode.UNAVAILABLE
    stranger = Connection(
        ca_file=ca, cert_file=str(pki["stranger"].cert), key_file=str(pki["stranger"].key)
    )
    assert code_of(mtls_address, stranger) == grpc.StatusCode.UNAVAILABLE
    client = Connection(
        ca_file=ca, cert_file=str(pki["client"].cert), key_file=str(pki["client"].key)
    )
    assert list_models(mtls_address, client) == []


def test_tritonclient_over_mtls(mtls_address, pki):
    client = Connection(
        ca_file=str(pki["ca"].cert),
        cert_file=str(pki["client"].cert),
        key_file=str(pki["client"].key),
    )
    with ParetoClient(mtls_address, connection=client) as c:
        c.models.UploadModel(iter(upload_messages("tiny", tiny_model_bytes())))
    triton = tc.InferenceServerClient(mtls_address, **client.triton_kwargs())
    try:
        assert triton.is_server_ready()
        x = tc.InferInput("x", [2, 4], "FP32")
        x.set_data_from_numpy(np.ones((2, 4), np.float32))
        n = tc.InferInput("n", [2, 4], "INT64")
        n.set_data_from_numpy(np.ones((2, 4), np.int64))
        result = triton.infer("tiny", [x, n])
        assert np.allclose(result.as_numpy("y"), np.ones((2, 4), np.float32) @ WEIGHT)
    finally:
        triton.close()
    plain = tc.InferenceServerClient(mtls_address, ssl=True, root_certificates=client.ca_file)
    try:
        with pytest.raises(InferenceServerException):
            plain.is_server_live(client_timeout=DEADLINE_S)
    finally:
        plain.close()


def test_cli_over_tls(tls_address, pki):
    runner = CliRunner()
    args = ["models", "--json", "--server", tls_address, "--tls-ca", str(pki["ca"].cert)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "[]"


@pytest.mark.parametrize(
    ("files", "named"),
    [
        ({"tls_cert_file": "server.crt"}, "PARETO_TLS_CERT_FILE and PARETO_TLS_KEY_FILE"),
        ({"tls_key_file": "server.key"}, "PARETO_TLS_CERT_FILE and PARETO_TLS_KEY_FILE"),
        ({"tls_client_ca_file": "ca.crt"}, "PARETO_TLS_CLIENT_CA_FILE needs"),
        ({"tls_cert_file": "server.crt", "tls_key_file": "client.key"}, "PARETO_TLS_KEY_FILE:"),
        ({"tls_cert_file": "server.key", "tls_key_file": "server.key"}, "PARETO_TLS_CERT_FILE:"),
        ({"tls_cert_file": "server.crt", "tls_key_file": "server.crt"}, "PARETO_TLS_KEY_FILE:"),
        (
            {
                "tls_cert_file": "server.crt",
                "tls_key_file": "server.key",
                "tls_client_ca_file": "x",
            },
            "PARETO_TLS_CLIENT_CA_FILE:",
        ),
    ],
)
def test_bad_tls_settings_stop_start_naming_the_setting(tmp_path, pki, files, named):
    d = pki["ca"].cert.parent
    (d / "x").write_text("not a certificate\n")
    settings = make_settings(tmp_path / "data", **{k: d / v for k, v in files.items()})
    with pytest.raises(SettingsError) as err:
        GatewayServer(settings).start()
    assert named in str(err.value)
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_missing_tls_file_is_a_settings_error(tmp_path):
    with pytest.raises(SettingsError, match="PARETO_TLS_CERT_FILE"):
        load_settings(tls_cert_file=tmp_path / "nope.crt")


def test_pareto_serve_refuses_half_tls_settings(tmp_path, pki):
    env = {"PARETO_TLS_CERT_FILE": str(pki["server"].cert), "PARETO_HOST": "127.0.0.1"}
    args = ["serve", "--port", "0", "--metrics-port", "0", "--http-port", "0"]
    args += ["--data-dir", str(tmp_path / "d")]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 1
    assert "PARETO_TLS_CERT_FILE and PARETO_TLS_KEY_FILE must be set together" in result.output
    missing = CliRunner().invoke(cli, args, env={"PARETO_TLS_KEY_FILE": str(tmp_path / "no")})
    assert missing.exit_code == 1 and "PARETO_TLS_KEY_FILE" in missing.output


def test_cli_upload_and_infer_over_mtls_with_a_token(tmp_path, pki):
    (tmp_path / "tokens").write_text("ops admin ops-token-0123456789\n")
    tls = {"tls_cert_file": pki["server"].cert, "tls_key_file": pki["server"].key}
    settings = make_settings(
        tmp_path / "data",
        tls_client_ca_file=pki["ca"].cert,
        auth_tokens_file=tmp_path / "tokens",
        **tls,
    )
    gateway = GatewayServer(settings)
    gateway.start()
    try:
        env = {
            "PARETO_SERVER": f"localhost:{gateway.port}",
            "PARETO_TLS_CA": str(pki["ca"].cert),
            "PARETO_TLS_CLIENT_CERT": str(pki["client"].cert),
            "PARETO_TLS_CLIENT_KEY": str(pki["client"].key),
        }
        model = tmp_path / "tiny.onnx"
        model.write_bytes(tiny_model_bytes())
        runner = CliRunner()
        refused = runner.invoke(cli, ["upload", str(model), "--name", "tiny"], env=env)
        assert refused.exit_code == 1 and "UNAUTHENTICATED" in refused.output
        env["PARETO_TOKEN"] = "ops-token-0123456789"
        uploaded = runner.invoke(cli, ["upload", str(model), "--name", "tiny"], env=env)
        assert uploaded.exit_code == 0, uploaded.output
        np.save(tmp_path / "x.npy", np.ones((1, 4), np.float32))
        np.save(tmp_path / "n.npy", np.ones((1, 4), np.int64))
        args = ["infer", "tiny", "--json", "--input", f"x={tmp_path / 'x.npy'}"]
        inferred = runner.invoke(cli, [*args, "--input", f"n={tmp_path / 'n.npy'}"], env=env)
        assert inferred.exit_code == 0, inferred.output
        assert np.allclose(json.loads(inferred.output)["y"], np.ones((1, 4)) @ WEIGHT)
    finally:
        gateway.stop(grace=1.0)
