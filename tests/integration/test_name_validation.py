"""Names and ids are checked where they enter, through the real servicers."""

from __future__ import annotations

import grpc
import pytest
from tritonclient.grpc import service_pb2 as kserve_pb
from tritonclient.grpc import service_pb2_grpc as kserve_grpc

from pareto.v1 import datasets_pb2, jobs_pb2, models_pb2, variants_pb2


def calls(client, channel):
    kserve = kserve_grpc.GRPCInferenceServiceStub(channel)
    return [
        (client.models.GetModel, models_pb2.GetModelRequest(name="a/b"), "name must match"),
        (client.models.DeleteModel, models_pb2.DeleteModelRequest(name=".."), "name must match"),
        (client.datasets.GetDataset, datasets_pb2.GetDatasetRequest(name="a b"), "name must"),
        (client.jobs.GetJob, jobs_pb2.GetJobRequest(id="nope"), "id must match job-[0-9a-f]"),
        (client.jobs.CancelJob, jobs_pb2.CancelJobRequest(id="job-XX"), "id must match"),
        (client.jobs.ListJobs, jobs_pb2.ListJobsRequest(model="a/b"), "model must match"),
        (
            client.jobs.CreateJob,
            jobs_pb2.CreateJobRequest(model="m", datasets={"calibration": "../x"}),
            "datasets['calibration'] must match",
        ),
        (client.variants.GetVariant, variants_pb2.GetVariantRequest(id="x"), "id must match var-"),
        (
            client.variants.ListVariants,
            variants_pb2.ListVariantsRequest(model="é"),
            "model must match",
        ),
        (
            kserve.ModelInfer,
            kserve_pb.ModelInferRequest(model_name="../etc/passwd"),
            "model_name must match",
        ),
        (
            kserve.ModelMetadata,
            kserve_pb.ModelMetadataRequest(name="m", version="latest"),
            "version must match",
        ),
        (
            kserve.RepositoryModelUnload,
            kserve_pb.RepositoryModelUnloadRequest(model_name="a b"),
            "model_name must match",
        ),
    ]


def test_bad_names_and_ids_are_invalid_argument(client, address):
    with grpc.insecure_channel(address) as channel:
        for call, request, message in calls(client, channel):
            with pytest.raises(grpc.RpcError) as err:
                call(request, timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, message
            assert message in err.value.details()
