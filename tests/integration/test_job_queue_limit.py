"""PARETO_MAX_QUEUED_JOBS through the real gRPC server, on both metadata backends: the
CreateJob that would exceed it is RESOURCE_EXHAUSTED naming the limit, and stores
nothing; a slot freed by a cancel is usable again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

import tests.helpers.job_techniques  # noqa: F401  (registers the test.* techniques)
from pareto.v1 import jobs_pb2
from pareto_cli.client import ParetoClient
from service.server import GatewayServer
from tests.helpers.gateway_settings import make_settings
from tests.helpers.jobs import PLUGIN, step
from tests.helpers.tiny_model import tiny_model_bytes, upload_messages

LIMIT = 2


@pytest.fixture(params=["sqlite", "postgres"])
def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GatewayServer]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else ""
    settings = make_settings(
        tmp_path / "data",
        extra_technique_modules=PLUGIN,
        measure_memory=False,
        max_queued_jobs=LIMIT,
        database_url=url,
    )
    server = GatewayServer(settings)
    server.start()
    server.scheduler.stop(grace=0)  # nothing runs: every accepted job stays QUEUED
    yield server
    server.stop(grace=1.0)


def create(client: ParetoClient) -> jobs_pb2.Job:
    recipe = jobs_pb2.Recipe(name="copy", steps=[step("test.scale", factor=1.0)])
    request = jobs_pb2.CreateJobRequest(
        model="tiny",
        recipes=[recipe],
        evaluation=jobs_pb2.EvaluationSettings(batch_sizes=[1], iterations=3),
    )
    return client.jobs.CreateJob(request, timeout=30)


def test_the_job_beyond_the_queue_limit_is_refused_and_stores_nothing(client, gateway):
    client.models.UploadModel(iter(upload_messages("tiny", tiny_model_bytes())))
    accepted = [create(client) for _ in range(LIMIT)]
    with pytest.raises(grpc.RpcError) as refused:
        create(client)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"PARETO_MAX_QUEUED_JOBS={LIMIT}" in refused.value.details()
    listed = client.jobs.ListJobs(jobs_pb2.ListJobsRequest()).jobs
    assert sorted(j.id for j in listed) == sorted(j.id for j in accepted)

    client.jobs.CancelJob(jobs_pb2.CancelJobRequest(id=accepted[0].id))
    assert create(client).state == jobs_pb2.JobState.JOB_STATE_QUEUED
