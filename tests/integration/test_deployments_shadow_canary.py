"""Shadow traffic and canary rollouts through a real gateway with the real tritonclient.

"Slowed" and "failing" runtimes are the real ONNX Runtime sessions of the variant with
their `run` wrapped in this process: blocked until released, or raising."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as tc
from tritonclient.utils import InferenceServerException

from pareto.v1 import deployments_pb2 as pb
from pareto_cli.client import ParetoClient
from pareto_core.errors import Internal
from service.server import GatewayServer
from tests.helpers.deployments import (
    VARIANT,
    answered_by,
    insert_variant,
    pixels,
    running_gateway,
    sample,
    stub,
    targets,
    wait_for,
)

QUEUE = 4


@pytest.fixture
def gateway(tmp_path: Path, digits_model) -> Iterator[GatewayServer]:
    with running_gateway(tmp_path / "data", shadow_queue_size=QUEUE) as server:
        with ParetoClient(f"127.0.0.1:{server.port}") as client:
            client.upload(digits_model.path, "digits")
        insert_variant(server, "digits", digits_model.path)
        yield server


@pytest.fixture
def x(digits_model) -> list[tc.InferInput]:
    return pixels(digits_model.X_test[:4])


def session_of(gateway: GatewayServer, version: str):
    (model,) = [m for m in gateway.sessions.loaded() if m.servable.version == version]
    return model.session


def report(gateway: GatewayServer) -> dict[str, pb.TargetReport]:
    reply = stub(gateway).GetDeploymentReport(pb.GetDeploymentReportRequest(name="digits"))
    return {t.target: t for t in reply.targets}


def test_a_blocked_shadow_never_holds_the_primary_and_agreement_is_computed(gateway, triton, x):
    stub(gateway).CreateDeployment(
        pb.CreateDeploymentRequest(
            name="digits", model="digits", targets=targets(("1", 100), shadows=(VARIANT,))
        )
    )
    shadow = session_of(gateway, VARIANT)
    real_run, release, entered = shadow.run, threading.Event(), threading.Event()

    def blocked_run(inputs, names=None):
        entered.set()
        release.wait(60)
        return real_run(inputs, names)

    shadow.run = blocked_run
    labels = {"model": "digits", "variant": VARIANT, "runtime": "onnxruntime_cpu"}
    dropped_before = sample("pareto_shadow_dropped_total", role="shadow", **labels)
    try:
        answers = [answered_by(triton, "digits", x) for _ in range(20)]  # none may wait
        assert answers == ["v1"] * 20
        assert entered.wait(30)  # the shadow really is stuck inside its runtime
    finally:
        release.set()
    # 20 copies: one running, QUEUE waiting, the rest dropped and counted.
    dropped = sample("pareto_shadow_dropped_total", role="shadow", **labels) - dropped_before
    assert dropped >= 20 - QUEUE - 1
    rows = wait_for(lambda: (r := report(gateway)) and r[VARIANT].comparisons >= 20 - dropped and r)
    shadow_row, primary_row = rows[VARIANT], rows["1"]
    assert shadow_row.role == pb.ROLE_SHADOW and shadow_row.shadow_dropped == dropped
    assert shadow_row.top1_agreement == 1.0 and shadow_row.cosine_mean == pytest.approx(1.0)
    assert shadow_row.max_abs_diff < 1e-5  # the same graph: identical answers
    assert primary_row.requests == 20 and primary_row.comparisons == shadow_row.comparisons
    count = sample("pareto_shadow_agreement_count", role="shadow", measure="top1", **labels)
    assert count >= shadow_row.comparisons


def canary_request(steps: list[float], **plan: float) -> pb.CreateDeploymentRequest:
    values = {"min_requests": 10, "dwell_seconds": 0.0} | plan
    return pb.CreateDeploymentRequest(
        name="digits",
        model="digits",
        targets=targets("1", VARIANT),
        canary=pb.CanaryPlan(canary=VARIANT, steps=steps, **values),
    )


def get(gateway: GatewayServer) -> pb.Deployment:
    return stub(gateway).GetDeployment(pb.GetDeploymentRequest(name="digits"))


def weights(deployment: pb.Deployment) -> dict[str, float]:
    return {t.name: t.weight for t in deployment.targets}


def test_a_failing_canary_rolls_back_by_itself_and_says_why(gateway, triton, x):
    created = stub(gateway).CreateDeployment(canary_request([50, 100]))
    assert weights(created) == {"1": 50, VARIANT: 50}
    assert (
        created.canary_status.state == pb.CANARY_STATE_RUNNING and created.canary_status.step == 1
    )

    def broken(inputs, names=None):
        raise Internal("injected failure of the canary")

    session_of(gateway, VARIANT).run = broken
    labels = {"model": "digits", "variant": VARIANT, "runtime": "onnxruntime_cpu"}
    before = sample("pareto_rollbacks_total", role="primary", reason="error_rate", **labels)

    def send() -> None:
        try:
            triton.infer("digits", x)
        except InferenceServerException as exc:
            assert "injected failure" in exc.message()

    def rolled_back() -> bool:
        return get(gateway).canary_status.state == pb.CANARY_STATE_ROLLED_BACK

    wait_for(rolled_back, poke=send)
    deployment = get(gateway)
    assert weights(deployment) == {"1": 100, VARIANT: 0}
    assert deployment.canary_status.step == 0
    assert "error rate 100.00%" in deployment.canary_status.reason
    assert "step 1 (50%)" in deployment.canary_status.reason
    after = sample("pareto_rollbacks_total", role="primary", reason="error_rate", **labels)
    assert after == before + 1
    assert sample("pareto_canary_step", role="primary", **labels) == 0
    assert {answered_by(triton, "digits", x) for _ in range(30)} == {"v1"}  # no canary traffic
    reply = stub(gateway).GetDeploymentReport(pb.GetDeploymentReportRequest(name="digits"))
    assert reply.canary_status.reason == deployment.canary_status.reason
    row = next(t for t in reply.targets if t.target == VARIANT)
    assert row.errors == row.requests >= 10 and row.error_test.significant


def test_a_healthy_canary_is_promoted_step_by_step(gateway, triton, x):
    plan = {"max_p99_latency_ratio": 50.0, "min_agreement": 0.99}
    request = canary_request([25, 50, 100], **plan)
    request.canary.agreement_measure = "top1"
    stub(gateway).CreateDeployment(request)
    seen = []

    def send() -> None:
        triton.infer("digits", x)
        step = get(gateway).canary_status.step
        if not seen or seen[-1] != step:
            seen.append(step)

    wait_for(lambda: get(gateway).canary_status.state == pb.CANARY_STATE_PROMOTED, poke=send)
    deployment = get(gateway)
    assert weights(deployment) == {"1": 0, VARIANT: 100}
    assert seen[0] == 1 and seen[-1] == 3 and seen == sorted(seen)
    assert "met its SLOs" in deployment.canary_status.reason
    assert report(gateway)[VARIANT].comparisons > 0  # agreement was checked against "1"
