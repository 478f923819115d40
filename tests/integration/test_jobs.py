"""Compression jobs through the real server and real worker processes.

The recipes use the cheap test techniques of `tests.helpers.job_techniques` (loaded by the
server and its workers as a plug-in), so these tests exercise the job runtime (streaming,
cancellation, crashes, restarts, limits, bad input) rather than compression itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

import tests.helpers.job_techniques  # noqa: F401  (registers the test.* techniques here)
from pareto.v1 import jobs_pb2
from pareto_cli.client import ParetoClient
from service.server import GatewayServer
from service.store.sqlite_repository import SqliteRepository
from tests.helpers.jobs import (
    PLUGIN,
    STATE,
    create_job,
    get_job,
    infer_digits,
    is_gone,
    job_settings,
    pid_of,
    slow_recipe,
    step,
    upload_dataset,
    upload_digits,
    wait_for,
    watch,
)
from tests.helpers.serve_process import start_server


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayServer]:
    """Overrides the shared fixture: the same real server, with the test techniques."""
    server = GatewayServer(job_settings(tmp_path / "data"))
    server.start()
    yield server
    server.stop(grace=1.0)


@pytest.fixture
def digits(client: ParetoClient, digits_model) -> np.ndarray:
    """Uploads the digits CNN as "digits" and its held-out set as dataset "digits-test"."""
    return upload_digits(client, digits_model)


# -- a job from start to variant -----------------------------------------------------------


def test_job_streams_to_succeeded_and_its_variants_are_servable(client, triton, digits, gateway):
    job = create_job(
        client,
        jobs_pb2.Recipe(name="copy", steps=[step("test.scale", factor=1.0)]),
        jobs_pb2.Recipe(steps=[step("test.slow", seconds=1.0), step("test.scale", factor=2.0)]),
        datasets={"evaluation": "digits-test"},
        quality_budget=jobs_pb2.QualityBudget(min_top1_agreement=0.9),
    )
    assert job.state == STATE.JOB_STATE_QUEUED
    assert [r.name for r in job.recipes] == ["copy", "test.slow+test.scale"]

    events = watch(client, job.id)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[0].state == STATE.JOB_STATE_QUEUED
    assert events[-1].state == STATE.JOB_STATE_SUCCEEDED, events[-1].message
    running = [e for e in events if e.state == STATE.JOB_STATE_RUNNING]
    assert [e.percent for e in running] == sorted(e.percent for e in running)
    assert {"test.slow", "test.scale", "evaluate"} <= {e.step for e in running}
    assert any("left_s" in e.metrics for e in running)  # partial metrics of a step

    done = get_job(client, job.id)
    assert (done.state, done.percent, done.attempts) == (STATE.JOB_STATE_SUCCEEDED, 100.0, 1)
    assert len(done.variant_ids) == 2
    copy = gateway.repo.get_variant(done.variant_ids[0])
    assert (copy.parent_model, copy.parent_version, copy.job_id) == ("digits", 1, job.id)
    assert copy.recipe.name == "copy" and copy.budget_ok
    assert copy.report["steps"][0]["technique"] == "test.scale"
    assert copy.metrics["size_bytes"] == copy.size_bytes
    assert copy.parent_metrics["size_bytes"] > 0

    # servable right away, under its own name and as a version of its parent
    x = digits[:4]
    parent_out = infer_digits(triton, x)
    np.testing.assert_allclose(infer_digits(triton, x, model=copy.serving_name), parent_out)
    by_version = infer_digits(triton, x, model_version=copy.id)
    np.testing.assert_allclose(by_version, parent_out)
    doubled = infer_digits(triton, x, model_version=done.variant_ids[1])
    assert not np.allclose(doubled, parent_out)


def test_a_variant_that_breaks_the_budget_is_not_stored_unless_kept(client, digits, gateway):
    shrink = jobs_pb2.Recipe(name="tiny", steps=[step("test.scale", factor=0.01)])
    budget = jobs_pb2.QualityBudget(min_top1_agreement=0.999)
    dataset = {"evaluation": "digits-test"}
    failed = create_job(client, shrink, datasets=dataset, quality_budget=budget)
    events = watch(client, failed.id)
    assert events[-1].state == STATE.JOB_STATE_FAILED
    reason = get_job(client, failed.id).reason
    assert "tiny: quality budget not met" in reason and "top1" in reason
    assert gateway.repo.list_variants("digits") == []

    budget.keep_failing = True
    kept = create_job(client, shrink, datasets=dataset, quality_budget=budget)
    assert watch(client, kept.id)[-1].state == STATE.JOB_STATE_SUCCEEDED
    (variant,) = gateway.repo.list_variants("digits")
    assert not variant.budget_ok and "top1" in variant.budget_reason


def test_a_failing_alternative_is_reported_and_the_others_still_yield(client, digits, gateway):
    job = create_job(
        client,
        # only the first step's format is known before running: this fails at step 2
        jobs_pb2.Recipe(name="wrong-order", steps=[step("test.scale"), step("test.torch_only")]),
        jobs_pb2.Recipe(name="ok", steps=[step("test.scale")]),
    )
    events = watch(client, job.id)
    assert events[-1].state == STATE.JOB_STATE_SUCCEEDED
    assert (
        "not stored: wrong-order: step 2 (test.torch_only) takes torch_export" in events[-1].message
    )
    messages = " | ".join(e.message for e in events)
    assert "wrong-order: failed" in messages
    assert [
        gateway.repo.get_variant(v).recipe.name for v in get_job(client, job.id).variant_ids
    ] == ["ok"]


# -- cancellation, crashes, limits -----------------------------------------------------------


def test_cancel_a_queued_and_a_running_job(client, digits, gateway, tmp_path):
    pid_file = tmp_path / "worker.pid"
    running = create_job(client, slow_recipe(120, pid_file))
    queued = create_job(client, slow_recipe(0))  # concurrency 1: waits behind the first
    pid = pid_of(pid_file)
    with pytest.raises(grpc.RpcError) as err:  # its jobs hold the model
        client.delete_model("digits")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert running.id in err.value.details() and queued.id in err.value.details()

    cancelled = client.jobs.CancelJob(jobs_pb2.CancelJobRequest(id=queued.id))
    assert cancelled.state == STATE.JOB_STATE_CANCELLED
    assert watch(client, queued.id)[-1].state == STATE.JOB_STATE_CANCELLED

    cancelled = client.jobs.CancelJob(jobs_pb2.CancelJobRequest(id=running.id))
    assert cancelled.state == STATE.JOB_STATE_CANCELLED and "cancelled" in cancelled.reason
    assert watch(client, running.id)[-1].state == STATE.JOB_STATE_CANCELLED
    wait_for(lambda: is_gone(pid), "the cancelled worker to exit")
    wait_for(lambda: not gateway.scheduler.running_jobs(), "the scheduler to reap it")
    assert get_job(client, running.id).state == STATE.JOB_STATE_CANCELLED
    assert gateway.repo.list_variants() == []

    with pytest.raises(grpc.RpcError) as err:
        client.jobs.CancelJob(jobs_pb2.CancelJobRequest(id=running.id))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already CANCELLED" in err.value.details()
    assert [m.name for m in client.delete_model("digits")] == ["digits"]


def test_sigkilled_worker_fails_the_job_and_the_server_keeps_serving(
    client, triton, digits, tmp_path
):
    pid_file = tmp_path / "worker.pid"
    job = create_job(client, slow_recipe(120, pid_file))
    os.kill(pid_of(pid_file), signal.SIGKILL)

    events = watch(client, job.id)
    assert events[-1].state == STATE.JOB_STATE_FAILED
    failed = get_job(client, job.id)
    assert "worker killed by SIGKILL" in failed.reason
    assert infer_digits(triton, digits[:2]).shape == (2, 10)


def test_the_memory_limit_fails_the_job_not_the_server(tmp_path, digits_model):
    gib = 1024**3
    server = GatewayServer(job_settings(tmp_path / "data", job_memory_limit_bytes=2 * gib))
    server.start()
    try:
        with ParetoClient(f"127.0.0.1:{server.port}") as client:
            client.upload(digits_model.path, "digits")
            job = create_job(client, jobs_pb2.Recipe(steps=[step("test.allocate", gib=4)]))
            assert watch(client, job.id)[-1].state == STATE.JOB_STATE_FAILED
            assert "out of memory" in get_job(client, job.id).reason
            assert client.get_model("digits").name == "digits"
    finally:
        server.stop(grace=1.0)


def test_the_wall_time_limit_fails_the_job(tmp_path, digits_model):
    server = GatewayServer(job_settings(tmp_path / "data", job_timeout_s=1.0))
    server.start()
    try:
        with ParetoClient(f"127.0.0.1:{server.port}") as client:
            client.upload(digits_model.path, "digits")
            job = create_job(client, slow_recipe(120))
            assert watch(client, job.id)[-1].state == STATE.JOB_STATE_FAILED
            assert "exceeded PARETO_JOB_TIMEOUT_S=1" in get_job(client, job.id).reason
    finally:
        server.stop(grace=1.0)


# -- restarts --------------------------------------------------------------------------------


@pytest.mark.parametrize("max_attempts", [2, 1])
def test_a_job_interrupted_by_a_restart_is_requeued_or_failed(tmp_path, digits_model, max_attempts):
    data_dir = tmp_path / "data"
    settings = job_settings(data_dir, job_max_attempts=max_attempts)
    pid_file = tmp_path / "worker.pid"
    first = GatewayServer(settings)
    first.start()
    with ParetoClient(f"127.0.0.1:{first.port}") as client:
        client.upload(digits_model.path, "digits")
        job = create_job(client, slow_recipe(1.5, pid_file))
        pid = pid_of(pid_file)
    first.stop(grace=5.0)
    assert is_gone(pid)  # the worker went down with the server
    repo = SqliteRepository(data_dir / "metadata.db")
    assert repo.get_job(job.id).state == "RUNNING"  # never silently lost
    repo.close()

    second = GatewayServer(settings)
    second.start()
    try:
        with ParetoClient(f"127.0.0.1:{second.port}") as client:
            events = watch(client, job.id)
            done = get_job(client, job.id)
    finally:
        second.stop(grace=1.0)
    if max_attempts == 2:
        assert any("re-queued after a server restart" in e.message for e in events)
        assert (done.state, done.attempts, len(done.variant_ids)) == (
            STATE.JOB_STATE_SUCCEEDED,
            2,
            1,
        )
    else:
        assert (done.state, done.attempts) == (STATE.JOB_STATE_FAILED, 1)
        assert "interrupted" in done.reason


def test_kill_9_of_the_server_takes_its_workers_and_the_job_resumes(
    tmp_path, digits_model, monkeypatch
):
    monkeypatch.setenv("PARETO_EXTRA_TECHNIQUE_MODULES", PLUGIN)
    data_dir = tmp_path / "data"
    pid_file = tmp_path / "worker.pid"
    process, address = start_server(data_dir)
    try:
        with ParetoClient(address) as client:
            client.upload(digits_model.path, "digits")
            job = create_job(client, slow_recipe(1.0, pid_file))
            worker = pid_of(pid_file)
        process.send_signal(signal.SIGKILL)
        process.wait()
        wait_for(lambda: is_gone(worker), "the worker to die with the server (PDEATHSIG)")
    finally:
        process.kill()

    process, address = start_server(data_dir)
    try:
        with ParetoClient(address) as client:
            assert watch(client, job.id)[-1].state == STATE.JOB_STATE_SUCCEEDED
            assert get_job(client, job.id).attempts == 2
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "code", "pattern"),
    [
        ({"model": "nope"}, grpc.StatusCode.NOT_FOUND, "model 'nope' not found"),
        (
            {"recipes": [jobs_pb2.Recipe(steps=[step("prune.everything")])]},
            grpc.StatusCode.INVALID_ARGUMENT,
            "unknown technique 'prune.everything'; known techniques: [",
        ),
        (
            {"recipes": [jobs_pb2.Recipe(steps=[step("test.scale", factor=-1)])]},
            grpc.StatusCode.INVALID_ARGUMENT,
            "recipes[0].steps[0].config.factor",
        ),
        (
            {"datasets": {"calibration": "wrong-shape"}},
            grpc.StatusCode.INVALID_ARGUMENT,
            "pixels",
        ),
        ({"datasets": {"calibration": "absent"}}, grpc.StatusCode.NOT_FOUND, "absent"),
        (
            {"recipes": [jobs_pb2.Recipe(steps=[step("test.torch_only")])]},
            grpc.StatusCode.FAILED_PRECONDITION,
            "test.torch_only takes torch_export models",
        ),
    ],
)
def test_bad_requests_get_the_right_code_and_store_nothing(client, digits, fields, code, pattern):
    upload_dataset(client, "wrong-shape", pixels=np.zeros((4, 1, 4, 4), np.float32))
    fields = {"recipes": [jobs_pb2.Recipe(steps=[step("test.scale")])]} | fields
    request = jobs_pb2.CreateJobRequest(model=fields.pop("model", "digits"), **fields)
    with pytest.raises(grpc.RpcError) as err:
        client.jobs.CreateJob(request)
    assert err.value.code() == code
    assert pattern in err.value.details()
    assert list(client.jobs.ListJobs(jobs_pb2.ListJobsRequest()).jobs) == []


def test_unknown_job_is_not_found(client):
    for call, request in (
        (client.jobs.GetJob, jobs_pb2.GetJobRequest(id="job-000000000000")),
        (client.jobs.CancelJob, jobs_pb2.CancelJobRequest(id="job-000000000000")),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call(request)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        watch(client, "job-000000000000")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


# -- the CLI ---------------------------------------------------------------------------------

RECIPE_YAML = """
recipes:
  - name: copy
    steps:
      - technique: test.scale
        config: {factor: 1.0}
  - steps:
      - technique: test.slow
        config: {seconds: 0.2}
datasets: {evaluation: digits-test}
quality_budget: {min_top1_agreement: 0.9}
evaluation: {batch_sizes: [1, 4], iterations: 3}
"""


def pareto(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pareto_cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"PARETO_EXTRA_TECHNIQUE_MODULES": PLUGIN},
    )


def test_cli_compress_wait_then_list_show_and_cancel(address, digits, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE_YAML)
    server = ("--server", address)

    result = pareto("compress", "digits", "--recipe", str(recipe), "--wait", "--json", *server)
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    assert job["state"] == "JOB_STATE_SUCCEEDED" and len(job["variant_ids"]) == 2
    assert job["evaluation"]["batch_sizes"] == ["1", "4"]
    assert "evaluate" in result.stderr and "SUCCEEDED" in result.stderr  # streamed events

    listed = pareto("jobs", "--model", "digits", "--json", *server)
    assert [j["id"] for j in json.loads(listed.stdout)] == [job["id"]]
    table = pareto("jobs", *server)
    assert job["id"] in table.stdout and "SUCCEEDED" in table.stdout
    shown = pareto("jobs", "show", job["id"], *server)
    assert "recipe copy: test.scale" in shown.stdout and job["variant_ids"][0] in shown.stdout

    cancelled = pareto("jobs", "cancel", job["id"], *server)
    assert cancelled.returncode == 1
    assert "FAILED_PRECONDITION" in cancelled.stderr and "already SUCCEEDED" in cancelled.stderr


def test_cli_recipe_file_errors_name_the_problem(address, digits, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    server = ("--server", address)
    recipe.write_text("steps:\n  - technique: test.scale\n    config: {factor: 50}\n")
    result = pareto("compress", "digits", "--recipe", str(recipe), *server)
    assert result.returncode == 1
    assert "INVALID_ARGUMENT" in result.stderr
    assert "recipes[0].steps[0].config.factor" in result.stderr
    recipe.write_text("recipe: []\n")
    result = pareto("compress", "digits", "--recipe", str(recipe), *server)
    assert result.returncode != 0 and "unknown keys ['recipe']" in result.stderr
