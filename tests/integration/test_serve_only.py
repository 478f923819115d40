"""PARETO_JOB_CONCURRENCY=0: a replica that serves and queues jobs but never runs one (the
cluster overlay's gateways; workers elsewhere claim the queue)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pareto.v1 import jobs_pb2
from pareto_cli.client import ParetoClient
from service.jobs.scheduler import POLL_S
from service.server import GatewayServer
from tests.helpers.jobs import create_job, get_job, job_settings, step, upload_digits


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayServer]:
    server = GatewayServer(job_settings(tmp_path / "data", job_concurrency=0))
    server.start()
    yield server
    server.stop(grace=1.0)


@pytest.fixture
def digits(client: ParetoClient, digits_model) -> np.ndarray:
    """Uploads the digits CNN as "digits" and its held-out set as dataset "digits-test"."""
    return upload_digits(client, digits_model)


def test_a_serve_only_replica_queues_jobs_and_runs_none(client, digits, gateway):
    job = create_job(client, jobs_pb2.Recipe(steps=[step("test.scale", factor=1.0)]))
    time.sleep(4 * POLL_S)  # several scheduler ticks
    assert get_job(client, job.id).state == jobs_pb2.JobState.JOB_STATE_QUEUED
    assert gateway.scheduler.running_jobs() == []
