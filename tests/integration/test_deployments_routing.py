"""Routing through a real gateway with the real tritonclient: weights, sticky keys,
pinning, shared sessions."""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import tritonclient.grpc as tc
from tritonclient.utils import InferenceServerException

from pareto.v1 import deployments_pb2 as pb
from pareto_cli.client import ParetoClient
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
)


@pytest.fixture
def gateway(tmp_path: Path, digits_model) -> Iterator[GatewayServer]:
    with running_gateway(tmp_path / "data") as server:
        with ParetoClient(f"127.0.0.1:{server.port}") as client:
            client.upload(digits_model.path, "digits")
        insert_variant(server, "digits", digits_model.path)
        yield server


@pytest.fixture
def x(digits_model) -> list[tc.InferInput]:
    return pixels(digits_model.X_test[:1])


def deploy(gateway: GatewayServer, *specs, name: str = "digits") -> pb.Deployment:
    request = pb.CreateDeploymentRequest(name=name, model="digits", targets=targets(*specs))
    return stub(gateway).CreateDeployment(request)


def test_weights_90_10_over_2000_requests_land_within_a_binomial_tolerance(gateway, triton, x):
    created = deploy(gateway, ("1", 90), (VARIANT, 10))
    assert [(t.name, t.weight, t.role) for t in created.targets] == [
        ("1", 90, pb.ROLE_PRIMARY),
        (VARIANT, 10, pb.ROLE_PRIMARY),
    ]
    n = 2000
    counts = Counter(answered_by(triton, "digits", x) for _ in range(n))
    assert set(counts) == {"v1", VARIANT}
    expected, sd = n * 0.1, math.sqrt(n * 0.1 * 0.9)
    assert abs(counts[VARIANT] - expected) <= 5 * sd, counts  # ~1e-6 chance of a false alarm

    labels = {"model": "digits", "runtime": "onnxruntime_cpu", "role": "primary"}
    weight = sample("pareto_variant_traffic_weight", variant=VARIANT, **labels)
    assert weight == 10
    report = stub(gateway).GetDeploymentReport(pb.GetDeploymentReportRequest(name="digits"))
    assert {t.target: t.requests for t in report.targets} == {
        "1": counts["v1"],
        VARIANT: counts[VARIANT],
    }


def test_sticky_keys_never_move_while_weights_stay(gateway, triton, x):
    deploy(gateway, ("1", 50), (VARIANT, 50))
    keys = [f"user-{i}" for i in range(60)]
    first = {
        k: answered_by(triton, "digits", x, key=k, metadata=i % 2 == 0) for i, k in enumerate(keys)
    }
    assert set(first.values()) == {"v1", VARIANT}  # both get keys (chance 2**-59 otherwise)
    for i, key in enumerate(keys):  # again, by the other channel (parameter <-> metadata)
        assert answered_by(triton, "digits", x, key=key, metadata=i % 2 == 1) == first[key]

    update = stub(gateway).UpdateTraffic
    update(pb.UpdateTrafficRequest(name="digits", weights={"1": 50, VARIANT: 50}))
    assert {k: answered_by(triton, "digits", x, key=k) for k in keys} == first

    # Consistent hashing: when "1" gains weight, none of its keys moves away.
    update(pb.UpdateTrafficRequest(name="digits", weights={"1": 80, VARIANT: 20}))
    after = {k: answered_by(triton, "digits", x, key=k) for k in keys}
    assert all(after[k] == "v1" for k in keys if first[k] == "v1")


def test_a_pinned_version_always_answers(gateway, triton, x):
    deploy(gateway, ("1", 90), (VARIANT, 10))
    assert {answered_by(triton, "digits", x, version=VARIANT) for _ in range(40)} == {VARIANT}
    assert {answered_by(triton, "digits", x, version="1", key="k") for _ in range(20)} == {"v1"}
    with pytest.raises(InferenceServerException) as err:
        triton.infer("digits", x, model_version="7")
    assert "StatusCode.NOT_FOUND" in err.value.status() and "'7'" in err.value.message()


def test_an_endpoint_of_its_own_name_serves_metadata_and_answers(gateway, triton, x):
    deploy(gateway, ("1", 50), (VARIANT, 50), name="digits-ab")
    assert triton.is_model_ready("digits-ab")
    metadata = triton.get_model_metadata("digits-ab")
    assert [i.name for i in metadata.inputs] == ["pixels"]
    assert answered_by(triton, "digits-ab", x) in ("v1", VARIANT)
    assert answered_by(triton, "digits", x) == "v1"  # the model's own name is untouched


def test_sessions_are_shared_and_a_runtime_choice_gets_its_own(gateway, triton, x):
    threads = {"intra_op_threads": 1, "inter_op_threads": 1}
    own = pb.Target(model_version=VARIANT, weight=50, runtime="onnxruntime_cpu")
    own.runtime_options.update(threads | {"graph_optimization_level": "basic"})
    request = pb.CreateDeploymentRequest(
        name="digits", model="digits", targets=[pb.Target(model_version="1", weight=50), own]
    )
    stub(gateway).CreateDeployment(request)
    pinned = stub(gateway).CreateDeployment(
        pb.CreateDeploymentRequest(name="digits-ab", model="digits", targets=targets(("1", 100)))
    )
    assert pinned.targets[0].model_version == "1"
    for endpoint in ("digits", "digits-ab", "digits"):
        answered_by(triton, endpoint, x, version="1")
    triton.infer("digits", x)

    def sessions_of(version: str) -> list:
        return [m for m in gateway.sessions.loaded() if m.servable.version == version]

    assert len(sessions_of("1")) == 1  # one session for every endpoint and plain requests
    (variant_session,) = sessions_of(VARIANT)
    assert variant_session.options["graph_optimization_level"] == "basic"

    stub(gateway).DeleteDeployment(pb.DeleteDeploymentRequest(name="digits"))
    assert sessions_of(VARIANT) == []  # its own session was drained and closed
    assert len(sessions_of("1")) == 1
    assert answered_by(triton, "digits", x) == "v1"  # plain serving again


def unavailable_runtime() -> str | None:
    from runtimes import registry

    for name in ("tensorrt_gpu", "edgetpu_tflite"):
        try:
            if registry.get_runtime(name).available() is not None:
                return name
        except grpc.RpcError:
            continue
        except Exception:  # not registered / not importable here
            continue
    return None


def test_an_unavailable_runtime_is_refused_never_replaced(gateway):
    missing = unavailable_runtime()
    if missing is None:
        pytest.skip("every registered accelerator runtime is available on this host")
    target = pb.Target(model_version=VARIANT, weight=100, runtime=missing)
    request = pb.CreateDeploymentRequest(name="digits", model="digits", targets=[target])
    with pytest.raises(grpc.RpcError) as err:
        stub(gateway).CreateDeployment(request)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert missing in err.value.details() and "targets[0].runtime" in err.value.details()
    assert list(stub(gateway).ListDeployments(pb.ListDeploymentsRequest()).deployments) == []


def test_requests_during_traffic_changes_all_succeed(gateway, address, x):
    deploy(gateway, ("1", 100), (VARIANT, 0))
    stop, errors, seen = threading.Event(), [], Counter()

    def hammer() -> None:
        client = tc.InferenceServerClient(address)
        try:
            while not stop.is_set():
                seen[answered_by(client, "digits", x)] += 1
        except Exception as exc:  # any failure is a finding
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for thread in threads:
        thread.start()
    update = stub(gateway).UpdateTraffic
    for i in range(20):
        weights = {"1": 0, VARIANT: 100} if i % 2 == 0 else {"1": 100, VARIANT: 0}
        update(pb.UpdateTrafficRequest(name="digits", weights=weights))
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == [] and sum(seen.values()) > 0
    final = stub(gateway).GetDeployment(pb.GetDeploymentRequest(name="digits"))
    assert final.revision == 21
