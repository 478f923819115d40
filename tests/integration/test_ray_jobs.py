"""Compression jobs on a real Ray cluster: a local head started by this module
(tests/helpers/ray_cluster.py: 2 CPUs, loopback), a real PostgreSQL database per test, a
real gateway in this process whose scheduler runs each job as a Ray actor (through a Ray
driver process), the test techniques of tests.helpers.job_techniques loaded by the actors.

A job runs in a Ray worker and stores its variant; a cancel stops the actor; a Ray worker
killed mid-job re-queues the job, and after its last attempt FAILS it with Ray's reason
(through Ray Client, ray://, as the Kubernetes overlay connects);
an unreachable head makes CreateJob answer UNAVAILABLE with nothing stored; Ray without
PostgreSQL is refused at start. The gateway itself never imports Ray.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

import tests.helpers.job_techniques  # noqa: F401  (registers the test.* techniques here)
from pareto.v1 import jobs_pb2
from pareto_cli.client import ParetoClient
from pareto_core.errors import FailedPrecondition
from service.server import GatewayServer
from tests.helpers.jobs import (
    STATE,
    create_job,
    get_job,
    is_gone,
    job_settings,
    pid_of,
    slow_recipe,
    step,
    upload_digits,
    wait_for,
    watch,
)
from tests.helpers.ray_cluster import RayHead, free_port

GiB = 1024**3
# A driver through Ray Client may need three connection tries of up to ~40 s each
# (service/ray_driver.py connect_with_retries) before its actor starts.
RAY_CLIENT_START_S = 180.0


def ray_settings(data_dir: Path, database_url: str, address: str, **overrides: object):
    values = {
        "database_url": database_url,
        "ray_address": address,
        "job_memory_limit_bytes": 2 * GiB,
        "job_max_attempts": 2,
        "replica_id": "replica-ray",
    }
    return job_settings(data_dir, **(values | overrides))


@pytest.fixture
def gateway(tmp_path: Path, postgres_url: str, ray_head: RayHead) -> Iterator[GatewayServer]:
    server = GatewayServer(ray_settings(tmp_path / "data", postgres_url, ray_head.address))
    server.start()
    yield server
    server.stop(grace=1.0)


@pytest.fixture
def digits(client: ParetoClient, digits_model) -> np.ndarray:
    return upload_digits(client, digits_model)


def test_a_job_runs_in_a_ray_actor_and_stores_its_variant(
    client, digits, gateway, ray_head, tmp_path
):
    pid_file = tmp_path / "actor.pid"
    job = create_job(
        client,
        jobs_pb2.Recipe(name="copy", steps=[step("test.scale", factor=1.0)]),
        jobs_pb2.Recipe(steps=[step("test.slow", seconds=2.0, pid_file=str(pid_file))]),
        datasets={"evaluation": "digits-test"},
    )
    pid = pid_of(pid_file)
    assert pid in ray_head.worker_pids("JobActor"), "the job does not run in a Ray actor"
    events = watch(client, job.id)
    assert events[-1].state == STATE.JOB_STATE_SUCCEEDED, events[-1].message
    running = [e for e in events if e.state == STATE.JOB_STATE_RUNNING]
    assert {"test.slow", "test.scale", "evaluate"} <= {e.step for e in running}
    done = get_job(client, job.id)
    assert (done.attempts, len(done.variant_ids)) == (1, 2)
    variant = gateway.repo.get_variant(done.variant_ids[0])
    assert variant.job_id == job.id and gateway.blobs.path(variant.sha256).is_file()
    log = (gateway.settings.data_dir / "jobs" / f"{job.id}.log").read_text()
    assert f"running in Ray actor {job.id}-run1 (1 CPU, 2 GiB)" in log
    wait_for(lambda: is_gone(pid), "the actor's process to end with its run")
    assert "ray" not in sys.modules, "the gateway imported Ray"


def test_cancel_stops_the_ray_actor(client, digits, gateway, tmp_path):
    pid_file = tmp_path / "actor.pid"
    job = create_job(client, slow_recipe(120, pid_file))
    pid = pid_of(pid_file)
    client.jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id))
    events = watch(client, job.id)
    assert events[-1].state == STATE.JOB_STATE_CANCELLED
    wait_for(lambda: is_gone(pid), "the cancelled actor's process to end")
    wait_for(lambda: not gateway.scheduler.running_jobs(), "the run to be reaped")
    assert get_job(client, job.id).state == STATE.JOB_STATE_CANCELLED


@pytest.fixture
def client_gateway(tmp_path: Path, postgres_url: str, ray_head: RayHead) -> Iterator[ParetoClient]:
    """A gateway that reaches the cluster through Ray Client (ray://), as on Kubernetes."""
    address = ray_head.client_address
    server = GatewayServer(ray_settings(tmp_path / "data", postgres_url, address))
    server.start()
    with ParetoClient(f"127.0.0.1:{server.port}") as client:
        yield client
    server.stop(grace=1.0)


def test_a_killed_ray_worker_is_retried_then_fails_with_the_reason(
    client_gateway, digits_model, tmp_path
):
    client = client_gateway
    upload_digits(client, digits_model)
    pid_file = tmp_path / "actor.pid"
    job = create_job(client, slow_recipe(120, pid_file))
    first = pid_of(pid_file, RAY_CLIENT_START_S)
    os.kill(first, signal.SIGKILL)  # the Ray worker hosting the job's actor

    def rerun_pid() -> int | None:
        pid = pid_of(pid_file)
        return pid if pid != first else None

    second = int(wait_for(rerun_pid, "a rerun", RAY_CLIENT_START_S))
    rerun = get_job(client, job.id)
    assert (rerun.state, rerun.attempts) == (STATE.JOB_STATE_RUNNING, 2)
    os.kill(second, signal.SIGKILL)
    events = watch(client, job.id)
    requeued = [e for e in events if e.state == STATE.JOB_STATE_QUEUED and e.step == "retry"]
    assert len(requeued) == 1
    assert "re-queued: the Ray worker running the job died" in requeued[0].message
    assert "(attempt 1 of 2)" in requeued[0].message
    failed = get_job(client, job.id)
    assert failed.state == STATE.JOB_STATE_FAILED and failed.attempts == 2
    assert "the Ray worker running the job died: ActorDiedError" in failed.reason
    assert "after 2 attempt(s) (PARETO_JOB_MAX_ATTEMPTS=2)" in failed.reason


def test_an_unreachable_ray_head_stores_nothing(tmp_path, postgres_url, digits_model):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    server = GatewayServer(ray_settings(tmp_path / "data", postgres_url, address))
    server.start()
    try:
        with ParetoClient(f"127.0.0.1:{server.port}") as client:
            upload_digits(client, digits_model)
            request = jobs_pb2.CreateJobRequest(
                model="digits", recipes=[jobs_pb2.Recipe(steps=[step("test.scale")])]
            )
            search = jobs_pb2.CreateJobRequest(
                model="digits",
                datasets={"evaluation": "digits-test"},
                search=jobs_pb2.SearchSpec(n_trials=2, techniques=["quantize.dynamic"]),
            )
            for message in (request, search):
                with pytest.raises(grpc.RpcError) as caught:
                    client.jobs.CreateJob(message)
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
                assert address in caught.value.details()
                assert "PARETO_RAY_ADDRESS" in caught.value.details()
            assert list(client.jobs.ListJobs(jobs_pb2.ListJobsRequest()).jobs) == []
            assert server.repo.latest_search("digits") is None
            bad = jobs_pb2.CreateJobRequest(model="digits")  # still checked first
            with pytest.raises(grpc.RpcError) as caught:
                client.jobs.CreateJob(bad)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        server.stop(grace=1.0)


def test_ray_without_postgresql_is_refused_at_start(tmp_path):
    settings = job_settings(tmp_path / "data", ray_address="127.0.0.1:6379")
    with pytest.raises(FailedPrecondition) as caught:
        GatewayServer(settings).start()
    assert "PARETO_DATABASE_URL" in str(caught.value)
    assert not (tmp_path / "data" / "metadata.db").exists()
