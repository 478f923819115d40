"""Two gateways on one real PostgreSQL database (README "Running a cluster"): what one
replica does to a deployment (create, change traffic, delete) the other serves within
PARETO_DEPLOYMENT_SYNC_S, without a restart."""

from __future__ import annotations

from contextlib import ExitStack

import tritonclient.grpc as tc

from pareto.v1 import deployments_pb2 as pb
from pareto_cli.client import ParetoClient
from tests.helpers.deployments import (
    VARIANT,
    answered_by,
    deployment_request,
    insert_variant,
    pixels,
    running_gateway,
    stub,
)
from tests.helpers.jobs import wait_for

SYNC_S = 0.1
SYNC_TIMEOUT_S = 20.0


def test_a_deployment_changed_on_one_replica_is_served_by_the_other(
    tmp_path, digits_model, postgres_url
):
    shared = {"database_url": postgres_url, "deployment_sync_s": SYNC_S}
    x = pixels(digits_model.X_test[:1])
    with ExitStack() as stack:
        a = stack.enter_context(running_gateway(tmp_path / "data", replica_id="a", **shared))
        b = stack.enter_context(running_gateway(tmp_path / "data", replica_id="b", **shared))
        with ParetoClient(f"127.0.0.1:{a.port}") as client:
            client.upload(digits_model.path, "digits")
        insert_variant(a, "digits", digits_model.path)
        triton_b = tc.InferenceServerClient(f"127.0.0.1:{b.port}")
        stack.callback(triton_b.close)

        stub(a).CreateDeployment(deployment_request(("1", 100), (VARIANT, 0)))
        wait_for(
            lambda: b.deployments.serves("digits"), "b to serve the new deployment", SYNC_TIMEOUT_S
        )
        assert {answered_by(triton_b, "digits", x) for _ in range(10)} == {"v1"}

        stub(a).UpdateTraffic(
            pb.UpdateTrafficRequest(name="digits", weights={"1": 0, VARIANT: 100})
        )
        wait_for(
            lambda: answered_by(triton_b, "digits", x) == VARIANT,
            "b to adopt the new split",
            SYNC_TIMEOUT_S,
        )
        assert {answered_by(triton_b, "digits", x) for _ in range(10)} == {VARIANT}
        seen_by_b = stub(b).GetDeployment(pb.GetDeploymentRequest(name="digits"))
        assert seen_by_b.revision == 2

        stub(b).DeleteDeployment(pb.DeleteDeploymentRequest(name="digits"))
        wait_for(
            lambda: not a.deployments.serves("digits"), "a to drop the deployment", SYNC_TIMEOUT_S
        )
