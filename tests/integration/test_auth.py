"""Bearer-token auth on a real gateway: scopes, refusals, open probes, CLI and tritonclient."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tc
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tritonclient.utils import InferenceServerException

from pareto.v1 import jobs_pb2, models_pb2
from pareto_cli.client import ParetoClient
from pareto_cli.connection import Connection
from pareto_cli.main import cli
from service.auth.interceptor import UNAUTHENTICATED_MESSAGE
from service.server import GatewayServer
from tests.helpers.gateway_settings import make_settings
from tests.helpers.tiny_model import WEIGHT, tiny_model_bytes, upload_messages

TOKENS = {"reader": "read-token-0123456789", "caller": "infer-token-0123456789"}
TOKENS["boss"] = "admin-token-0123456789"
TOKENS_FILE = f"""# name scopes token
reader  read   {TOKENS["reader"]}
caller  infer  {TOKENS["caller"]}
boss    admin  {TOKENS["boss"]}   # everything
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    root = tmp_path_factory.mktemp("auth")
    (root / "tokens").write_text(TOKENS_FILE)
    gateway = GatewayServer(make_settings(root / "data", auth_tokens_file=root / "tokens"))
    gateway.start()
    with ParetoClient(f"127.0.0.1:{gateway.port}", connection=Connection(TOKENS["boss"])) as c:
        c.models.UploadModel(iter(upload_messages("tiny", tiny_model_bytes())))
    yield gateway
    gateway.stop(grace=1.0)


@pytest.fixture(scope="module")
def address(server: GatewayServer) -> str:
    return f"127.0.0.1:{server.port}"


def client_as(address: str, who: str | None) -> ParetoClient:
    return ParetoClient(address, connection=Connection(TOKENS[who] if who else ""))


def status_of(call, *args) -> grpc.StatusCode:
    try:
        call(*args)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def infer_inputs() -> list[tc.InferInput]:
    x = tc.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(np.ones((1, 4), np.float32))
    n = tc.InferInput("n", [1, 4], "INT64")
    n.set_data_from_numpy(np.arange(4, dtype=np.int64).reshape(1, 4))
    return [x, n]


@pytest.mark.parametrize("token", [None, "wrong-token-0123456789", "", "Basic abc"])
def test_missing_or_bad_token_is_unauthenticated(address, token):
    with ParetoClient(address, connection=Connection()) as c:
        metadata = [("authorization", token if "Basic" in str(token) else f"Bearer {token}")]
        with pytest.raises(grpc.RpcError) as err:
            c.models.ListModels(models_pb2.ListModelsRequest(), metadata=metadata * bool(token))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert err.value.details() == UNAUTHENTICATED_MESSAGE


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        (None, grpc.StatusCode.UNAUTHENTICATED),
        ("reader", grpc.StatusCode.OK),
        ("caller", grpc.StatusCode.PERMISSION_DENIED),
        ("boss", grpc.StatusCode.OK),
    ],
)
def test_read_calls_need_read(address, who, expected):
    with client_as(address, who) as c:
        assert status_of(c.list_models) == expected
        assert status_of(c.get_model, "tiny") == expected
        assert status_of(c.jobs.ListJobs, jobs_pb2.ListJobsRequest()) == expected


@pytest.mark.parametrize("who", ["reader", "caller"])
def test_management_calls_need_admin(address, server, who):
    with client_as(address, who) as c:
        with pytest.raises(grpc.RpcError) as err:
            c.delete_model("tiny")
        upload = c.models.UploadModel
        assert status_of(upload, iter(upload_messages("other", tiny_model_bytes()))) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.value.details() == "this token lacks the 'admin' scope this call needs"
    assert [m.name for m in server.repo.list_models()] == ["tiny"]  # nothing changed


def test_streams_are_refused_before_reading(address, server):
    with client_as(address, None) as c:
        code = status_of(c.models.UploadModel, iter(upload_messages("sneaky", tiny_model_bytes())))
        watch = c.jobs.WatchJob(jobs_pb2.WatchJobRequest(id="job-0123456789ab"))
        assert status_of(list, watch) == grpc.StatusCode.UNAUTHENTICATED
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert [m.name for m in server.repo.list_models()] == ["tiny"]


def test_unknown_method_needs_admin(address):
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary("/pareto.v1.SecretService/Nothing")
        assert status_of(call, b"") == grpc.StatusCode.UNAUTHENTICATED
        meta = [("authorization", f"Bearer {TOKENS['reader']}")]
        assert status_of(lambda: call(b"", metadata=meta)) == grpc.StatusCode.PERMISSION_DENIED
        meta = [("authorization", f"Bearer {TOKENS['boss']}")]
        assert status_of(lambda: call(b"", metadata=meta)) == grpc.StatusCode.UNIMPLEMENTED


def test_probes_stay_open(address):
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        answer = next(stub.ServerReflectionInfo(iter([request])))
        assert answer.list_services_response.service
    triton = tc.InferenceServerClient(address)
    try:
        assert triton.is_server_live() and triton.is_server_ready()
        with pytest.raises(InferenceServerException) as err:
            triton.get_server_metadata()
        assert "UNAUTHENTICATED" in str(err.value.status())
    finally:
        triton.close()


@pytest.mark.parametrize(
    ("who", "allowed"), [("caller", True), ("boss", True), ("reader", False), (None, False)]
)
def test_tritonclient_inference_needs_infer(address, who, allowed):
    headers = {"authorization": f"Bearer {TOKENS[who]}"} if who else None
    triton = tc.InferenceServerClient(address)
    try:
        if not allowed:
            with pytest.raises(InferenceServerException):
                triton.infer("tiny", infer_inputs(), headers=headers)
            return
        result = triton.infer("tiny", infer_inputs(), headers=headers)
        assert np.allclose(result.as_numpy("y"), np.ones((1, 4), np.float32) @ WEIGHT)
        assert triton.get_model_metadata("tiny", headers=headers).name == "tiny"
    finally:
        triton.close()


def test_cli_token_from_flag_and_env(address, tmp_path):
    runner = CliRunner()
    refused = runner.invoke(cli, ["models", "--json", "--server", address], env={})
    assert refused.exit_code == 1 and "UNAUTHENTICATED" in refused.output
    by_flag = runner.invoke(cli, ["models", "--server", address, "--token", TOKENS["reader"]])
    assert by_flag.exit_code == 0, by_flag.output
    assert "tiny" in by_flag.output
    by_env = runner.invoke(cli, ["models", "--json"], env=_env(address, TOKENS["reader"]))
    assert by_env.exit_code == 0 and '"tiny"' in by_env.output
    np.save(tmp_path / "x.npy", np.ones((1, 4), np.float32))
    np.save(tmp_path / "n.npy", np.zeros((1, 4), np.int64))
    args = ["infer", "tiny", "--input", f"x={tmp_path / 'x.npy'}"]
    args += ["--input", f"n={tmp_path / 'n.npy'}", "--json", "--server", address]
    inferred = runner.invoke(cli, [*args, "--token", TOKENS["caller"]])
    assert inferred.exit_code == 0, inferred.output
    assert '"y"' in inferred.output
    refused = runner.invoke(cli, [*args, "--token", TOKENS["reader"]])
    assert refused.exit_code != 0 and "PERMISSION_DENIED" in refused.output


def _env(address: str, token: str) -> dict[str, str]:
    return {"PARETO_SERVER": address, "PARETO_TOKEN": token}


def test_bad_tokens_file_stops_start(tmp_path: Path):
    from service.settings import SettingsError

    secret = "a-secret-token-that-must-not-leak"
    (tmp_path / "tokens").write_text(f"ok read {secret}x\nbad writer {secret}\n")
    gateway = GatewayServer(make_settings(tmp_path / "d", auth_tokens_file=tmp_path / "tokens"))
    with pytest.raises(SettingsError) as err:
        gateway.start()
    message = str(err.value)
    assert "PARETO_AUTH_TOKENS_FILE" in message and "line 2" in message
    assert secret not in message
