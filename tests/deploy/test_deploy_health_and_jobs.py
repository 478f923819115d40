"""What the container and the cluster read from a real gateway: the HEALTHCHECK probe
(`python -m pareto_cli.healthcheck`, run as the image runs it, in a subprocess) against a
real server on loopback, the health service names the Kubernetes probes ask for, and the
`pareto_jobs` gauge the dashboard and the alerts read."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge

from service.jobs import scheduler as scheduler_module
from service.jobs.scheduler import JobScheduler
from service.server import GatewayServer
from service.settings import Settings
from service.store.records import JOB_STATES, JobRecord, RecipeSpec
from service.store.sqlite_repository import SqliteRepository
from tests.helpers.deploy_tools import ROOT
from tests.helpers.store_backends import create_job


def settings(data_dir: Path) -> Settings:
    return Settings(
        host="127.0.0.1", port=0, metrics_port=0, http_port=0, data_dir=data_dir, grpc_workers=4
    )


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayServer]:
    server = GatewayServer(settings(tmp_path / "data"))
    server.start()
    yield server
    server.stop(grace=1.0)


def probe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pareto_cli.healthcheck", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_probe_passes_on_a_serving_gateway(gateway):
    result = probe("--address", f"127.0.0.1:{gateway.port}")
    assert result.returncode == 0, result.stderr
    assert "SERVING" in result.stdout


def test_probe_reads_the_port_from_the_environment_like_the_image(gateway):
    result = probe(env={"PARETO_PORT": str(gateway.port), "PARETO_HEALTHCHECK_ADDRESS": ""})
    assert result.returncode == 0, result.stderr


def test_service_names_the_kubernetes_probes_ask_for_are_serving(gateway):
    # deploy/k8s: liveness/startup ask for "" (the server), readiness for KServe v2.
    for service in ("", "inference.GRPCInferenceService"):
        result = probe("--address", f"127.0.0.1:{gateway.port}", "--service", service)
        assert result.returncode == 0, (service, result.stderr)


def test_probe_fails_for_an_unknown_service(gateway):
    result = probe("--address", f"127.0.0.1:{gateway.port}", "--service", "no.such.Service")
    assert result.returncode == 1
    assert "NOT_FOUND" in result.stderr


def test_probe_fails_when_nothing_listens(tmp_path: Path):
    server = GatewayServer(settings(tmp_path / "data"))
    server.start()
    port = server.port
    server.stop(grace=0.5)
    result = probe("--address", f"127.0.0.1:{port}", "--timeout", "2")
    assert result.returncode == 1
    assert "UNAVAILABLE" in result.stderr or "DEADLINE_EXCEEDED" in result.stderr


def job(job_id: str, state: str) -> JobRecord:
    return JobRecord(
        id=job_id,
        model="m",
        model_version=1,
        recipes=(RecipeSpec(name="r", steps=({"technique": "quantize.dynamic", "config": {}},)),),
        datasets={},
        quality_budget={},
        evaluation={},
        state=state,
    )


def test_jobs_gauge_is_the_one_service_metrics_exports():
    import service.metrics

    assert scheduler_module.JOBS is service.metrics.JOBS
    assert service.metrics.JOBS.describe()[0].name == "pareto_jobs"


def test_jobs_gauge_counts_the_store_by_state(tmp_path: Path, monkeypatch):
    # The same gauge as service.metrics.JOBS, in a registry of its own: a gateway left
    # running by another test cannot overwrite what this scheduler wrote.
    registry = CollectorRegistry()
    gauge = Gauge("pareto_jobs", "test copy", ("state",), registry=registry)
    monkeypatch.setattr(scheduler_module, "JOBS", gauge)

    def jobs_gauge(state: str) -> float | None:
        return registry.get_sample_value("pareto_jobs", {"state": state})

    repo = SqliteRepository(tmp_path / "metadata.db")
    try:
        for i, state in enumerate(["QUEUED", "QUEUED", "RUNNING", "FAILED", "SUCCEEDED"]):
            create_job(repo, job(f"job-{i}", "QUEUED"))
            if state != "QUEUED":
                repo.update_job(f"job-{i}", state=state)
        scheduler = JobScheduler(repo, settings(tmp_path))
        scheduler._count_jobs()
        counts = {state: jobs_gauge(state) for state in JOB_STATES}
        assert counts == {
            "QUEUED": 2.0,
            "RUNNING": 1.0,
            "SUCCEEDED": 1.0,
            "FAILED": 1.0,
            "CANCELLED": 0.0,
        }
        # recounted at most every JOB_COUNT_INTERVAL_S, not on every 0.5 s tick
        repo.update_job("job-0", state="CANCELLED")
        scheduler._count_jobs()
        assert jobs_gauge("CANCELLED") == 0.0
        monkeypatch.setattr(scheduler_module, "JOB_COUNT_INTERVAL_S", 0.0)
        scheduler._count_jobs()
        assert jobs_gauge("CANCELLED") == 1.0 and jobs_gauge("QUEUED") == 1.0
    finally:
        repo.close()
