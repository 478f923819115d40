"""A compression job measuring on a runtime with a build step: `evaluation:
{runtime: edgetpu_tflite}` measures the digits CNN and its variant on the int8 .tflite
(cpu-fallback here), built through the server's artifact cache and calibrated on the job's
own calibration dataset; an alternative the runtime cannot build fails alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tc
from google.protobuf import struct_pb2

from examples.models import BuiltModel, digits_split
from pareto.v1 import deployments_pb2, jobs_pb2, variants_pb2
from pareto_cli.client import ParetoClient
from pareto_cli.datasets import upload_dataset
from service import metrics
from service.server import GatewayServer
from service.serving.targets import Target
from tests.helpers.gateway_settings import make_settings
from tests.helpers.litert import needs_litert

STATE = jobs_pb2.JobState
# Few calibration samples: the build is what costs, not what it calibrates on.
EDGETPU_DEFAULTS = {"edgetpu_tflite": {"calibration_samples": 16}}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayServer]:
    settings = make_settings(
        tmp_path / "data", measure_memory=False, runtime_options=EDGETPU_DEFAULTS
    )
    server = GatewayServer(settings)
    server.start()
    yield server
    server.stop(grace=1.0)


@pytest.fixture
def client(gateway: GatewayServer) -> Iterator[ParetoClient]:
    with ParetoClient(f"127.0.0.1:{gateway.port}") as c:
        yield c


@pytest.fixture
def uploaded(client: ParetoClient, digits_model: BuiltModel, tmp_path: Path) -> None:
    x_train, x_test, _, y_test = digits_split()
    np.savez(tmp_path / "calib.npz", pixels=x_train[:64])
    np.savez(tmp_path / "eval.npz", pixels=x_test[:128], labels=y_test[:128])
    client.upload(digits_model.path, "digits")
    upload_dataset(client, tmp_path / "calib.npz", "digits-calib")
    upload_dataset(client, tmp_path / "eval.npz", "digits-eval")


def _recipe(name: str, technique: str, **config: object) -> jobs_pb2.Recipe:
    struct = struct_pb2.Struct()
    struct.update(config)
    return jobs_pb2.Recipe(
        name=name, steps=[jobs_pb2.RecipeStep(technique=technique, config=struct)]
    )


def _run_job(client: ParetoClient, datasets: dict[str, str], *recipes: jobs_pb2.Recipe):
    request = jobs_pb2.CreateJobRequest(
        model="digits",
        recipes=list(recipes),
        datasets=datasets,
        quality_budget={"keep_failing": True},
        evaluation=jobs_pb2.EvaluationSettings(
            batch_sizes=[1], iterations=3, runtime="edgetpu_tflite"
        ),
    )
    job = client.jobs.CreateJob(request)
    events = list(client.jobs.WatchJob(jobs_pb2.WatchJobRequest(id=job.id), timeout=400))
    return client.jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id)), [e.message for e in events]


@needs_litert
@pytest.mark.slow
def test_job_measures_parent_and_variant_on_int8_tflite(
    client: ParetoClient, gateway: GatewayServer, uploaded
):
    job, events = _run_job(
        client,
        {"calibration": "digits-calib", "evaluation": "digits-eval"},
        _recipe("prune30", "prune.magnitude", sparsity=0.3),
        _recipe("dynamic", "quantize.dynamic"),  # ConvInteger: no int8 .tflite from it
    )
    assert job.state == STATE.JOB_STATE_SUCCEEDED, (job.reason, events)
    (variant_id,) = job.variant_ids
    final = events[-1]
    assert "dynamic: cannot be measured on edgetpu_tflite: FAILED_PRECONDITION" in final, final
    assert "edgetpu_tflite cannot convert this model to int8" in final

    variant = client.variants.GetVariant(variants_pb2.GetVariantRequest(id=variant_id))
    assert variant.recipe.name == "prune30"
    for measured in (variant.metrics, variant.parent_metrics):
        assert (measured.runtime, measured.device) == ("edgetpu_tflite", "cpu-fallback")
        assert measured.quality["accuracy"] >= 0.9  # int8 keeps the CNN's accuracy
        assert [e.batch_size for e in measured.latency] == [1]
    assert variant.metrics.sparsity > 0.25

    # The worker built into the server's cache, keyed as serving keys it: serving the
    # stored variant on edgetpu_tflite with the same dataset is a hit, not a rebuild.
    misses = metrics.RUNTIME_CACHE_MISSES.labels("edgetpu_tflite")
    before = misses._value.get()
    servable = gateway.sessions.resolve("digits", variant_id)
    options = {"calibration_dataset": "digits-calib"}
    with gateway.sessions.acquire(Target(servable, "edgetpu_tflite", options)) as model:
        assert model.session.device == "cpu-fallback"
    assert misses._value.get() == before

    # KServe ModelMetadata names the runtime serving it, and its fallback device.
    runtime_options = struct_pb2.Struct()
    runtime_options.update(options)
    target = deployments_pb2.Target(
        model_version=variant_id,
        runtime="edgetpu_tflite",
        runtime_options=runtime_options,
        weight=100,
    )
    client.deployments.CreateDeployment(
        deployments_pb2.CreateDeploymentRequest(name="edge", model="digits", targets=[target])
    )
    assert misses._value.get() == before
    triton = tc.InferenceServerClient(f"127.0.0.1:{gateway.port}")
    try:
        edge = triton.get_model_metadata("edge")
        plain = triton.get_model_metadata("digits")
    finally:
        triton.close()
    assert edge.platform == "edgetpu_tflite:cpu-fallback"
    assert edge.versions == [variant_id]
    assert plain.platform == "onnxruntime_cpu"


def test_job_without_calibration_dataset_is_refused_at_create(client: ParetoClient, uploaded):
    with pytest.raises(grpc.RpcError) as caught:
        _run_job(
            client,
            {"evaluation": "digits-eval"},
            _recipe("prune30", "prune.magnitude", sparsity=0.3),
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "give the job a calibration dataset (datasets.calibration)" in caught.value.details()
