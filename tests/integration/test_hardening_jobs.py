"""A job cancelled while it measures stops at once (no SIGKILL needed), and its worker's
scratch directory is removed however the worker ends."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pareto.v1 import jobs_pb2
from pareto_cli.client import ParetoClient
from service.jobs.spawn import scratch_path
from service.server import GatewayServer
from tests.helpers.jobs import STATE, get_job, job_settings, step, upload_digits, wait_for


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayServer]:
    server = GatewayServer(job_settings(tmp_path / "data"))
    server.start()
    yield server
    server.stop(grace=1.0)


def test_a_job_cancelled_while_measuring_stops_by_itself_and_leaves_no_scratch(
    gateway, client: ParetoClient, digits_model, caplog
):
    caplog.set_level(logging.INFO, logger="service.jobs.scheduler")
    upload_digits(client, digits_model)
    recipe = jobs_pb2.Recipe(name="copy", steps=[step("test.scale", factor=1.0)])
    request = jobs_pb2.CreateJobRequest(
        model="digits",
        recipes=[recipe],
        datasets={"evaluation": "digits-test"},
        # Thousands of timed runs at the largest batch: minutes of measuring.
        evaluation=jobs_pb2.EvaluationSettings(batch_sizes=[4096], iterations=10_000),
    )
    job = client.jobs.CreateJob(request)

    wait_for(lambda: _measuring(gateway, job.id), "the job to measure", 120)
    time.sleep(1.0)  # into the timed runs
    scratch = scratch_path(gateway.settings.data_dir, job.id, 1)
    assert scratch.is_dir()
    client.jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id))
    wait_for(lambda: not gateway.scheduler.running_jobs(), "the worker to end", 60)
    assert get_job(client, job.id).state == STATE.JOB_STATE_CANCELLED
    assert not scratch.exists()
    exits = [r.getMessage() for r in caplog.records if re.search(r"run ended with", r.getMessage())]
    assert exits and not exits[-1].endswith("-9"), exits  # it stopped; it was not killed


def _measuring(gateway: GatewayServer, job_id: str) -> bool:
    return any(e.step == "evaluate" for e in gateway.repo.list_events(job_id))
