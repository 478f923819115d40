"""Delete and create of things naming one model cannot both win: the store checks, in the
writing transaction, what refers to a model (both metadata backends); a deployment the
caller gave up on is not stored; runtime options are bounded."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from pareto.v1 import deployments_pb2 as pb
from pareto.v1 import deployments_pb2_grpc as pb_grpc
from pareto_cli.client import ParetoClient
from pareto_core.errors import DeadlineExceeded
from runtimes.options import host_cpus
from service.server import GatewayServer
from service.store.deployment_records import TargetSpec
from tests.helpers.deployments import deployment_request, running_gateway, stub
from tests.helpers.tiny_model import tiny_model_bytes, upload_messages

TRIES = 20


@pytest.fixture(params=["sqlite", "postgres"])
def racing_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GatewayServer]:
    overrides = {}
    if request.param == "postgres":
        overrides["database_url"] = request.getfixturevalue("postgres_url")
    with running_gateway(tmp_path / "data", **overrides) as gateway:
        yield gateway


def _outcome(call) -> str:
    try:
        call()
        return "OK"
    except grpc.RpcError as exc:
        return exc.code().name


def _race(deployments: pb_grpc.DeploymentServiceStub, client: ParetoClient) -> dict[str, str]:
    """CreateDeployment("x") and DeleteModel("x") let go at the same moment."""
    results: dict[str, str] = {}
    start = threading.Barrier(2)

    def create() -> None:
        start.wait()
        request = deployment_request(("1", 100.0), name="x", model="x")
        results["create"] = _outcome(lambda: deployments.CreateDeployment(request))

    def delete() -> None:
        start.wait()
        results["delete"] = _outcome(lambda: client.delete_model("x"))

    threads = [threading.Thread(target=create), threading.Thread(target=delete)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_create_deployment_racing_delete_model_never_both_succeed(racing_gateway):
    gateway = racing_gateway
    deployments = stub(gateway)
    with ParetoClient(f"127.0.0.1:{gateway.port}") as client:
        for _ in range(TRIES):
            client.models.UploadModel(iter(upload_messages("x", tiny_model_bytes())))
            results = _race(deployments, client)
            assert list(results.values()).count("OK") == 1, results
            deployed = [d.name for d in gateway.repo.list_deployments()]
            if results["delete"] == "OK":
                assert deployed == [] and not gateway.repo.name_exists("x")
                assert not gateway.sessions.is_loaded("x")  # nothing served from memory
            else:
                assert deployed == ["x"] and gateway.repo.name_exists("x")
                deployments.DeleteDeployment(pb.DeleteDeploymentRequest(name="x"))
                gateway.sessions.unload("x")
                client.delete_model("x")


def test_a_deployment_the_caller_gave_up_on_is_not_created(gateway, client):
    client.models.UploadModel(iter(upload_messages("tiny", tiny_model_bytes())))
    target = TargetSpec("1", "1", weight=100.0)
    with pytest.raises(DeadlineExceeded, match="nothing was created"):
        gateway.deployments.create("tiny", "tiny", [target], None, still_wanted=lambda: False)
    assert gateway.repo.list_deployments() == []
    assert not gateway.sessions.is_loaded("tiny")


def test_thread_options_beyond_the_hosts_cpus_are_refused(gateway, client):
    client.models.UploadModel(iter(upload_messages("tiny", tiny_model_bytes())))
    options = {"intra_op_threads": 8000}
    target = pb.Target(model_version="1", weight=100.0, runtime="onnxruntime_cpu")
    target.runtime_options.update(options)
    request = pb.CreateDeploymentRequest(name="tiny", model="tiny", targets=[target])
    with pytest.raises(grpc.RpcError) as refused:
        stub(gateway).CreateDeployment(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"at most the {host_cpus()} CPUs" in refused.value.details()
    assert gateway.repo.list_deployments() == []
