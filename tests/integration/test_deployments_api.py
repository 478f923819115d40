"""DeploymentService through a real gateway: bad input changes nothing, the split survives
a restart, and the `pareto deploy` / `pareto report` commands."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
import tritonclient.grpc as tc
from click.testing import CliRunner
from onnx import TensorProto, helper

from pareto.v1 import deployments_pb2 as pb
from pareto_cli.client import ParetoClient
from pareto_cli.main import cli
from tests.helpers.deployments import (
    VARIANT,
    answered_by,
    deployment_request,
    insert_variant,
    pixels,
    running_gateway,
    stub,
    targets,
)

OTHER_VARIANT = "var-00000000e2"


def other_signature_model(path: Path) -> Path:
    """A real ONNX model whose input `pixels` has another shape than the digits CNN's."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["pixels"], ["logits"])],
        "flat",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 10])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture
def gateway(tmp_path, digits_model):
    with running_gateway(tmp_path / "data") as server:
        with ParetoClient(f"127.0.0.1:{server.port}") as client:
            client.upload(digits_model.path, "digits")
            client.upload(digits_model.path, "other")
            insert_variant(server, "digits", digits_model.path)
            insert_variant(server, "other", digits_model.path, OTHER_VARIANT)
            flat = other_signature_model(tmp_path / "flat.onnx")
            client.upload(flat, "digits", new_version=True)  # version 2: another signature
        yield server


BAD = [
    (
        deployment_request(("1", 60), (VARIANT, 30)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "must sum to 100, got 90 (1=60, var-00000000d1=30)",
    ),
    (
        deployment_request(("1", 50), ("var-ffffffffff", 50)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "targets[1].model_version: variant 'var-ffffffffff' not found",
    ),
    (
        deployment_request(("1", 50), (OTHER_VARIANT, 50)),
        grpc.StatusCode.INVALID_ARGUMENT,
        f"targets[1].model_version: variant '{OTHER_VARIANT}' belongs to model 'other'",
    ),
    (
        deployment_request(("1", 50), ("2", 50)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "target '2' (2) is not compatible with '1' (1): input 'pixels' is FP32[-1, 1, 8, 8] vs",
    ),
    (
        deployment_request(("1", 100), name="other"),
        grpc.StatusCode.FAILED_PRECONDITION,
        "endpoint name 'other' is the name of another uploaded model",
    ),
    (
        deployment_request(("1", 100), model="nope"),
        grpc.StatusCode.NOT_FOUND,
        "model 'nope' not found",
    ),
    (
        deployment_request(("1", 100), name=f"digits.{VARIANT}"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "is a variant's own serving name",
    ),
    (
        pb.CreateDeploymentRequest(
            name="digits",
            model="digits",
            targets=[*targets(("1", 100)), pb.Target(model_version="1", role=2, weight=5)],
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "targets[1].weight must be 0 for a shadow",
    ),
    (
        pb.CreateDeploymentRequest(
            name="digits",
            model="digits",
            targets=[pb.Target(model_version="1", weight=100, runtime="no_such_runtime")],
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "targets[0].runtime: unknown runtime 'no_such_runtime'",
    ),
    (
        deployment_request("1", VARIANT, canary=pb.CanaryPlan(canary=VARIANT, steps=[50, 10])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "canary.steps must be increasing percents in (0, 100], got [50.0, 10.0]",
    ),
    (
        deployment_request(
            ("1", 90), (VARIANT, 10), canary=pb.CanaryPlan(canary=VARIANT, steps=[5])
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "the plan starts 'var-00000000d1' at 5%",
    ),
]


@pytest.mark.parametrize(("bad", "code", "message"), BAD, ids=range(len(BAD)))
def test_bad_deployments_are_refused_and_change_nothing(gateway, bad, code, message):
    loaded_before = {m.servable.key for m in gateway.sessions.loaded()}
    with pytest.raises(grpc.RpcError) as err:
        stub(gateway).CreateDeployment(bad)
    assert err.value.code() == code
    assert message in err.value.details()
    assert list(stub(gateway).ListDeployments(pb.ListDeploymentsRequest()).deployments) == []
    assert {m.servable.key for m in gateway.sessions.loaded()} == loaded_before


def test_bad_traffic_updates_change_nothing(gateway):
    created = stub(gateway).CreateDeployment(deployment_request(("1", 50), (VARIANT, 50)))
    update = stub(gateway).UpdateTraffic
    for weights, message in (
        ({"1": 70, VARIANT: 20}, "must sum to 100, got 90"),
        ({"1": 100}, f"missing ['{VARIANT}']"),
        ({"1": 50, VARIANT: 40, "3": 10}, "['3'] are not primary targets"),
        ({"1": 150, VARIANT: -50}, "must be a percent in [0, 100], got "),
    ):
        with pytest.raises(grpc.RpcError) as err:
            update(pb.UpdateTrafficRequest(name="digits", weights=weights))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in err.value.details()
    assert stub(gateway).GetDeployment(pb.GetDeploymentRequest(name="digits")) == created
    with pytest.raises(grpc.RpcError) as err:
        stub(gateway).CreateDeployment(deployment_request(("1", 100)))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError) as err:
        update(pb.UpdateTrafficRequest(name="nope", weights={"1": 100}))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_deployed_variant_or_model_is_not_deleted(gateway):
    from pareto.v1 import variants_pb2

    stub(gateway).CreateDeployment(deployment_request(("1", 50), (VARIANT, 50), name="ab"))
    with ParetoClient(f"127.0.0.1:{gateway.port}") as client:
        for call in (
            lambda: client.variants.DeleteVariant(variants_pb2.DeleteVariantRequest(id=VARIANT)),
            lambda: client.delete_model("digits", 1),
        ):
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "deployment(s) ab" in err.value.details()
        assert gateway.repo.get_variant(VARIANT) and gateway.repo.get_model("digits", 1)


def test_the_split_survives_a_restart(tmp_path, digits_model):
    x = pixels(digits_model.X_test[:1])
    with running_gateway(tmp_path / "data") as server:
        with ParetoClient(f"127.0.0.1:{server.port}") as client:
            client.upload(digits_model.path, "digits")
        insert_variant(server, "digits", digits_model.path)
        stub(server).CreateDeployment(deployment_request(("1", 50), (VARIANT, 50)))
        changed = stub(server).UpdateTraffic(
            pb.UpdateTrafficRequest(name="digits", weights={"1": 0, VARIANT: 100})
        )
    assert changed.revision == 2
    with running_gateway(tmp_path / "data") as server:
        again = stub(server).GetDeployment(pb.GetDeploymentRequest(name="digits"))
        assert again == changed
        triton = tc.InferenceServerClient(f"127.0.0.1:{server.port}")
        try:
            assert {answered_by(triton, "digits", x) for _ in range(20)} == {VARIANT}
            assert answered_by(triton, "digits", x, version="1") == "v1"
        finally:
            triton.close()
        deleted = stub(server).DeleteDeployment(pb.DeleteDeploymentRequest(name="digits"))
        assert deleted.name == "digits"
    with running_gateway(tmp_path / "data") as server:
        assert list(stub(server).ListDeployments(pb.ListDeploymentsRequest()).deployments) == []


def test_deploy_and_report_commands(gateway, digits_model):
    server = ["--server", f"127.0.0.1:{gateway.port}"]
    runner = CliRunner(env={"COLUMNS": "220"})
    created = runner.invoke(
        cli,
        [
            "deploy",
            "create",
            "digits",
            "--primary",
            "1=50",
            "--primary",
            f"{VARIANT}=50",
            "--shadow",
            "1",
            *server,
        ],
    )
    assert created.exit_code == 0, created.output
    assert "shadow (100% sampled)" in created.output
    triton = tc.InferenceServerClient(f"127.0.0.1:{gateway.port}")
    try:
        for _ in range(40):
            answered_by(triton, "digits", pixels(digits_model.X_test[:2]))
    finally:
        triton.close()
    traffic = runner.invoke(cli, ["deploy", "traffic", "digits", "1=80", f"{VARIANT}=20", *server])
    assert traffic.exit_code == 0, traffic.output
    shown = json.loads(runner.invoke(cli, ["deploy", "show", "digits", "--json", *server]).output)
    assert [(t["name"], t.get("weight", 0)) for t in shown["targets"]] == [
        ("1", 80),
        (VARIANT, 20),
        ("1-shadow", 0),
    ]
    table = runner.invoke(cli, ["report", "digits", *server])
    assert table.exit_code == 0, table.output
    for expected in ("Mann-Whitney U", "two-proportion z-test", "baseline", VARIANT, "p="):
        assert expected in table.output
    as_json = json.loads(runner.invoke(cli, ["report", "digits", "--json", *server]).output)
    rows = {t["target"]: t for t in as_json["targets"]}
    assert int(rows["1"]["requests"]) + int(rows[VARIANT]["requests"]) == 40
    assert "latency_test" in rows[VARIANT] and "latency_test" not in rows["1"]
    bad = runner.invoke(cli, ["deploy", "traffic", "digits", "1=80", *server])
    assert bad.exit_code == 1 and "INVALID_ARGUMENT" in bad.output
    deleted = runner.invoke(cli, ["deploy", "delete", "digits", *server])
    assert deleted.exit_code == 0, deleted.output
    listed = runner.invoke(cli, ["deploy", "list", "--json", *server])
    assert json.loads(listed.output) == []
