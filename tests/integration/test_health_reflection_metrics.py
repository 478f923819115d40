"""gRPC health, server reflection (what grpcurl uses) and the Prometheus endpoint."""

from __future__ import annotations

import urllib.request

import grpc
import numpy as np
import tritonclient.grpc as tc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from prometheus_client.parser import text_string_to_metric_families

from service.server import SERVICE_NAMES


def test_health_serving_then_not_serving_on_stop(gateway, address):
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService", "pareto.v1.ModelService"):
            response = stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_every_service(gateway, address):
    with grpc.insecure_channel(address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert set(SERVICE_NAMES) <= services
        upload = database.FindFileContainingSymbol("pareto.v1.ModelService")
        assert upload.package == "pareto.v1"


def scrape(port: int) -> dict[str, list]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(body)}


def test_metrics_after_upload_and_inference(gateway, client, triton, digits_model):
    client.upload(digits_model.path, "metered")
    pixels = digits_model.X_test[:3].astype(np.float32)
    tensor = tc.InferInput("pixels", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels)
    for _ in range(3):
        triton.infer("metered", [tensor])
    families = scrape(gateway.metrics_port)
    labels = {"model": "metered", "variant": "v1", "runtime": "onnxruntime_cpu"}

    def value(family: str, sample: str, **extra: str) -> float:
        wanted = labels | extra
        matches = [s.value for s in families[family] if s.name == sample and s.labels == wanted]
        assert matches, f"{sample} with {wanted} missing"
        return matches[0]

    duration = "pareto_inference_request_duration_seconds"
    assert value(duration, duration + "_count") == 3
    assert value("pareto_inference_requests", "pareto_inference_requests_total", code="OK") == 3
    queue = "pareto_inference_queue_duration_seconds"
    assert value(queue, queue + "_count") == 3
    assert (
        value("pareto_model_size_bytes", "pareto_model_size_bytes")
        == digits_model.path.stat().st_size
    )
    load = "pareto_model_load_duration_seconds"
    assert value(load, load + "_count") == 1
    assert families["pareto_uploads"][0].name == "pareto_uploads_total"
    assert any(s.value > 0 for s in families["pareto_upload_bytes"])
    assert "pareto_model_memory_bytes" in families
    for samples in families.values():
        for sample in samples:
            assert "id" not in sample.labels  # no unbounded labels
