"""Two real `pareto serve` replicas sharing one data dir (the blob volume) and one real
PostgreSQL database, as in README "Running a cluster": what one stores the other serves;
a job created through one runs exactly once; kill -9 of the replica running a job and the
other finishes it once the lease has expired."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pareto.v1 import jobs_pb2, variants_pb2
from pareto_cli.client import ParetoClient
from service.store.postgres_repository import PostgresRepository
from tests.helpers.jobs import (
    PLUGIN,
    create_job,
    is_gone,
    job_settings,
    pid_of,
    slow_recipe,
    step,
    wait_for,
    watch,
)
from tests.helpers.tiny_model import tiny_model_bytes, upload_messages

ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 2.0
STATE = jobs_pb2.JobState


class Replica:
    """`pareto serve` in a process of its own, as replica `name`."""

    def __init__(self, name: str, data_dir: Path, database_url: str) -> None:
        self.name = name
        env = os.environ | {
            "PARETO_DATABASE_URL": database_url,
            "PARETO_REPLICA_ID": name,
            "PARETO_JOB_LEASE_S": str(LEASE_S),
            "PARETO_EXTRA_TECHNIQUE_MODULES": PLUGIN,
            "PARETO_MEASURE_MEMORY": "false",
        }
        command = [sys.executable, "-m", "pareto_cli.main", "serve", "--host", "127.0.0.1"]
        command += ["--port", "0", "--metrics-port", "0", "--http-port", "0"]
        command += ["--data-dir", str(data_dir)]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
        )
        self.address = ""

    def wait_ready(self) -> Replica:
        for line in self.process.stderr:
            if match := re.search(r"listening on 127\.0\.0\.1:(\d+)", line):
                threading.Thread(target=self.process.stderr.read, daemon=True).start()
                self.address = f"127.0.0.1:{match.group(1)}"
                return self
        raise AssertionError(f"replica {self.name} did not start (exit {self.process.wait()})")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def replicas(tmp_path: Path, postgres_url: str) -> Iterator[dict[str, Replica]]:
    data_dir = tmp_path / "shared-volume"
    started = [Replica(name, data_dir, postgres_url) for name in ("replica-a", "replica-b")]
    try:
        yield {r.name: r.wait_ready() for r in started}
    finally:
        for r in started:
            r.stop()


def scale_recipe() -> jobs_pb2.Recipe:
    return jobs_pb2.Recipe(name="copy", steps=[step("test.scale", factor=1.0)])


def test_two_replicas_share_the_store_and_survive_a_kill_9(replicas, postgres_url, tmp_path):
    a, b = replicas["replica-a"], replicas["replica-b"]
    with ParetoClient(a.address) as via_a, ParetoClient(b.address) as via_b:
        via_a.models.UploadModel(iter(upload_messages("tiny", tiny_model_bytes())))
        assert [m.name for m in via_b.list_models()] == ["tiny"]

        # A job created through a runs exactly once (one worker start), seen through b.
        job = create_job(via_a, scale_recipe(), model="tiny")
        events = watch(via_b, job.id)
        done = via_b.jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id))
        assert (done.state, done.attempts, len(done.variant_ids)) == (
            STATE.JOB_STATE_SUCCEEDED,
            1,
            1,
        )
        assert sum("worker starting" in e.message for e in events) == 1
        listed = via_b.variants.ListVariants(variants_pb2.ListVariantsRequest(model="tiny"))
        assert [v.id for v in listed.variants] == list(done.variant_ids)

        # kill -9 of the replica running a job: the other finishes it after the lease.
        pid_file = tmp_path / "worker.pid"
        job = create_job(via_b, slow_recipe(2.0, pid_file), model="tiny")
        worker = pid_of(pid_file)
    repo = PostgresRepository(postgres_url)
    try:
        owner = repo.get_job(job.id).owner
    finally:
        repo.close()
    victim, survivor = (a, b) if owner == a.name else (b, a)
    assert victim.name == owner
    killed_at = time.monotonic()
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait()
    deadline = time.monotonic() + 10
    while not is_gone(worker) and time.monotonic() < deadline:  # PDEATHSIG
        time.sleep(0.05)
    assert is_gone(worker)

    with ParetoClient(survivor.address) as client:
        events = watch(client, job.id)
        done = client.jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id))
    assert events[-1].state == STATE.JOB_STATE_SUCCEEDED
    assert (done.attempts, len(done.variant_ids)) == (2, 1)
    requeue = next(e for e in events if "stopped renewing its lease" in e.message)
    assert f"replica {owner!r}" in requeue.message
    assert time.monotonic() - killed_at >= LEASE_S  # not before the lease expired
    repo = PostgresRepository(postgres_url)
    try:
        assert repo.get_job(job.id).owner == survivor.name
    finally:
        repo.close()


@contextmanager
def replica_a_running_a_slow_job(
    tmp_path: Path, postgres_url: str, lease_s: float
) -> Iterator[tuple[ParetoClient, jobs_pb2.Job, int]]:
    """Replica "replica-a" as a gateway in this process, running a 30 s job on the tiny
    model: (a client of it, the job, its worker's pid). The gateway stops on exit."""
    import tests.helpers.job_techniques  # noqa: F401  (the test.* techniques in this process)
    from service.server import GatewayServer

    settings = job_settings(
        tmp_path / "data", database_url=postgres_url, replica_id="replica-a", job_lease_s=lease_s
    )
    gateway = GatewayServer(settings)
    gateway.start()
    try:
        with ParetoClient(f"127.0.0.1:{gateway.port}") as client:
            client.models.UploadModel(iter(upload_messages("tiny", tiny_model_bytes())))
            pid_file = tmp_path / "worker.pid"
            job = create_job(client, slow_recipe(30.0, pid_file), model="tiny")
            yield client, job, pid_of(pid_file)
    finally:
        gateway.stop(grace=1.0)


def test_a_replica_whose_job_was_requeued_meanwhile_stops_its_worker(tmp_path, postgres_url):
    """Fencing: replica a stalls past its lease (simulated by another replica re-queuing
    the job with a tiny lease); a's next renewal finds the job no longer its own and stops
    the worker instead of letting two runs of one job go on."""
    other = PostgresRepository(postgres_url)
    try:
        with replica_a_running_a_slow_job(tmp_path, postgres_url, 30.0) as (client, job, first):
            (requeued,) = other.requeue_expired_jobs(max_attempts=5, lease_s=0.0)
            assert (requeued.id, requeued.owner) == (job.id, "replica-a")
            wait_for(lambda: is_gone(first), "the fenced worker to stop", timeout_s=20)
            again = wait_for(
                lambda: (j := other.get_job(job.id)).attempts == 2 and j, "the job to run again"
            )
            assert (again.state, again.owner) == ("RUNNING", "replica-a")
            client.jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id))
    finally:
        other.close()


def test_a_gracefully_stopped_replica_hands_its_jobs_back_at_once(tmp_path, postgres_url):
    """SIGTERM / a rolling update: the stopping replica re-queues its running job itself,
    so another replica runs it without waiting for the (here: long) lease."""
    with replica_a_running_a_slow_job(tmp_path, postgres_url, 600.0) as (_, job, worker):
        pass  # leaving stops the gateway
    assert is_gone(worker)
    repo = PostgresRepository(postgres_url)
    try:
        handed_back = repo.get_job(job.id)
        events = repo.list_events(job.id)
    finally:
        repo.close()
    assert (handed_back.state, handed_back.attempts) == ("QUEUED", 1)
    assert "re-queued after its replica stopped" in events[-1].message
