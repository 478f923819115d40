"""What the deployment tests share: a gateway with fast canary checks, variant records
inserted as a job stores them, CreateDeployment requests, and KServe calls that report
which target answered."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as tc
from prometheus_client import REGISTRY

from pareto.v1 import deployments_pb2 as pb
from pareto.v1 import deployments_pb2_grpc as pb_grpc
from service.server import GatewayServer
from service.store.records import RecipeSpec, VariantRecord
from tests.helpers.gateway_settings import make_settings

VARIANT = "var-00000000d1"
RECIPE = RecipeSpec("same", ({"technique": "quantize.dynamic", "config": {}},))


@contextmanager
def running_gateway(data_dir: Path, **overrides: Any) -> Iterator[GatewayServer]:
    values = {"measure_memory": False, "canary_interval_s": 0.05} | overrides
    server = GatewayServer(make_settings(data_dir, **values))
    server.start()
    try:
        yield server
    finally:
        server.stop(grace=1.0)


def stub(gateway: GatewayServer) -> pb_grpc.DeploymentServiceStub:
    import grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{gateway.port}")
    return pb_grpc.DeploymentServiceStub(channel)


def insert_variant(
    gateway: GatewayServer,
    model: str,
    parent_path: Path,
    variant_id: str = VARIANT,
    **fields: Any,
) -> VariantRecord:
    """A variant of `model` as a job stores it (blob first, then the record): the same
    graph under different bytes, so its answers equal the parent's. `fields` override the
    record's (recipe, metrics, ...); a callable value gets (bytes size, parent record)."""
    import onnx

    graph = onnx.load(parent_path)
    graph.doc_string = f"variant {variant_id}"
    data = graph.SerializeToString()
    sha = hashlib.sha256(data).hexdigest()
    staging = gateway.blobs.new_staging_path()
    staging.write_bytes(data)
    gateway.blobs.commit(staging, sha)
    parent = gateway.repo.get_model(model)
    values: dict[str, Any] = {
        "id": variant_id,
        "parent_model": model,
        "parent_version": parent.version,
        "job_id": "job-000000000001",
        "recipe": RECIPE,
        "format": "onnx",
        "sha256": sha,
        "size_bytes": len(data),
        "signature": parent.signature,
        "metrics": {},
        "parent_metrics": {},
        "budget_ok": True,
    }
    for key, value in fields.items():
        values[key] = value(len(data), parent) if callable(value) else value
    return gateway.repo.add_variant(VariantRecord(**values))


def targets(*specs: tuple[str, float] | str, shadows: tuple[str, ...] = ()) -> list[pb.Target]:
    """Primaries as (model_version, weight) or bare model_version; then shadows."""
    out = []
    for spec in specs:
        version, weight = spec if isinstance(spec, tuple) else (spec, 0.0)
        out.append(pb.Target(model_version=version, weight=weight))
    out += [pb.Target(model_version=v, role=pb.ROLE_SHADOW) for v in shadows]
    return out


def deployment_request(
    *specs: tuple[str, float] | str, name: str = "digits", model: str = "digits", **kwargs: Any
) -> pb.CreateDeploymentRequest:
    """CreateDeployment of endpoint `name` on `model` with `specs` as in `targets`."""
    return pb.CreateDeploymentRequest(name=name, model=model, targets=targets(*specs), **kwargs)


def pixels(x: np.ndarray) -> list[tc.InferInput]:
    tensor = tc.InferInput("pixels", list(x.shape), "FP32")
    tensor.set_data_from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return [tensor]


def answered_by(
    triton: tc.InferenceServerClient,
    endpoint: str,
    inputs: list[tc.InferInput],
    version: str = "",
    key: str = "",
    metadata: bool = False,
) -> str:
    """Which target answered: the response's `pareto_variant` parameter (checked against
    its model_version)."""
    kwargs: dict[str, Any] = {"model_version": version}
    if key and metadata:
        kwargs["headers"] = {"pareto-route-key": key}
    elif key:
        kwargs["parameters"] = {"pareto-route-key": key}
    response = triton.infer(endpoint, inputs, **kwargs).get_response()
    variant = response.parameters["pareto_variant"].string_param
    assert variant in (response.model_version, f"v{response.model_version}")
    return variant


def wait_for(
    condition: Callable[[], Any], timeout: float = 30.0, poke: Callable[[], Any] | None = None
) -> Any:
    """Poll `condition` (calling `poke` between tries) until truthy; fails on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if poke is not None:
            poke()
        else:
            time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout} s")


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0
