"""Searches through the real server: real worker processes, the real Optuna study in the
server's SQLite database, real techniques and measurements on the digits CNN.

Budgets are tiny (a few trials of cheap techniques, few timed iterations), so these check
correctness: the frontier is truly non-dominated, the recommended variant meets the
limits and is stored, the plot is written, a resumed search adds trials to the same study,
a search restarted with the server continues its study, and bad or impossible limits get
clear answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from pareto.v1 import deployments_pb2, jobs_pb2, variants_pb2
from pareto_cli.client import ParetoClient
from pareto_cli.main import cli
from service.search.result import MIN_GAIN
from service.server import GatewayServer
from tests.helpers.gateway_settings import make_settings
from tests.helpers.jobs import get_job, wait_for, watch
from tests.helpers.search import (
    check_frontier,
    counted,
    get_search,
    run_search,
    search_request,
    upload_digits,
)

STATE = jobs_pb2.JobState


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayServer]:
    server = GatewayServer(make_settings(tmp_path / "data", measure_memory=False))
    server.start()
    yield server
    server.stop(grace=1.0)


@pytest.fixture
def digits(client: ParetoClient, digits_model) -> int:
    return upload_digits(client, digits_model)


def test_search_keeps_a_non_dominated_frontier_plots_it_and_resumes(client, digits, tmp_path):
    limits = {"max_quality_drop": 0.01, "max_size_bytes": digits}
    job = run_search(client, search_request(n_trials=6, sampler="random", constraints=limits))
    assert job.state == STATE.JOB_STATE_SUCCEEDED, job.reason
    assert job.search.n_trials == 6 and job.recipes == []

    result = get_search(client, model="digits")
    assert result.job_id == job.id and len(counted(result, job.id)) == 6
    assert result.quality_metric == "accuracy"
    assert result.quality_budget.max_accuracy_drop == pytest.approx(0.01)
    assert result.frontier, "no frontier"
    check_frontier(result)

    best = next(t for t in result.trials if t.number == result.recommended_trial)
    assert result.frontier[0] == best.number and best.standing == "recommended"
    assert best.metrics.quality_drop <= 0.01 + 1e-9 and best.metrics.size_bytes <= digits
    primary = result.spec.objectives[0]
    by_number = {t.number: t for t in result.trials}
    fastest = min(by_number[n].objectives[primary] for n in result.frontier)
    assert best.objectives[primary] <= fastest * (1 + MIN_GAIN)  # within 5%: a tie
    variant = client.variants.GetVariant(variants_pb2.GetVariantRequest(id=best.variant_id))
    assert variant.job_id == job.id and variant.budget_ok
    assert result.recommended_variant == best.variant_id
    assert sorted(job.variant_ids) == sorted(by_number[n].variant_id for n in result.frontier)

    runner = CliRunner(env={"COLUMNS": "240"})
    server = ["--server", client.address]
    plot = tmp_path / "frontier.png"
    shown = runner.invoke(cli, ["report", "digits", "--plot", str(plot), *server])
    assert shown.exit_code == 0, shown.output
    assert "recommended" in shown.output and best.variant_id in shown.output
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"
    as_json = json.loads(runner.invoke(cli, ["report", "digits", "--json", *server]).output)
    assert as_json["recommended_variant"] == best.variant_id

    resumed = runner.invoke(
        cli, ["search", "digits", "--resume", job.id, "--trials", "2", "--wait", "--json", *server]
    )
    assert resumed.exit_code == 0, resumed.output
    after = get_search(client, model="digits")
    assert after.job_id != job.id and after.study_name == result.study_name
    assert sorted(t.number for t in after.trials) == list(range(len(after.trials)))
    assert len(counted(after, after.job_id)) == 2
    assert {t.number for t in result.trials} < {t.number for t in after.trials}
    check_frontier(after)
    assert get_search(client, id=job.id).job_id == job.id  # the first job's result stays

    deploy = ["frontier", "digits", "--deploy-best", "--max-drop", "1%", "--json", *server]
    deployed = runner.invoke(cli, deploy)
    assert deployed.exit_code == 0, deployed.output
    best_now = after.recommended_variant
    request = deployments_pb2.GetDeploymentRequest(name="digits")
    canary = client.deployments.GetDeployment(request)
    assert [t.model_version for t in canary.targets] == ["1", best_now]
    assert canary.canary.canary == best_now and canary.canary_status.step == 1
    again = runner.invoke(cli, deploy)
    assert again.exit_code == 1 and "already has a deployment" in again.output


def test_impossible_limits_fail_the_search_and_name_the_closest_trial(client, digits):
    job = run_search(client, search_request(n_trials=3, constraints={"max_size_bytes": 1000}))
    assert job.state == STATE.JOB_STATE_FAILED
    assert "no trial met the limits" in job.reason and "closest: trial" in job.reason
    assert "max_size_bytes 1000" in job.reason
    result = get_search(client, id=job.id)
    assert not result.frontier and not result.HasField("recommended_trial")
    closest = next(t for t in result.trials if t.number == result.closest_trial)
    assert not closest.feasible and any("max_size_bytes" in v for v in closest.violations)
    assert closest.metrics.size_bytes == min(
        t.metrics.size_bytes for t in result.trials if t.state == jobs_pb2.TRIAL_STATE_COMPLETE
    )
    assert list(job.variant_ids) == []


BAD = [
    ({"constraints": {"max_quality_drop": -0.1}}, "INVALID_ARGUMENT", "max_quality_drop"),
    ({"constraints": {"max_size_bytes": 0}}, "INVALID_ARGUMENT", "max_size_bytes must be > 0"),
    ({"constraints": {"max_latency_ms": -2.0}}, "INVALID_ARGUMENT", "max_latency_ms"),
    ({"objectives": ["speed"]}, "INVALID_ARGUMENT", "search.objectives[0]: unknown objective"),
    ({"objectives": ["size", "size"]}, "INVALID_ARGUMENT", "listed twice"),
    ({"techniques": ["nope"]}, "INVALID_ARGUMENT", "unknown technique"),
    ({"techniques": ["fold.batchnorm"]}, "INVALID_ARGUMENT", "does not explore"),
    ({"techniques": ["distill.knowledge"]}, "FAILED_PRECONDITION", "training dataset"),
    ({"techniques": ["prune.transformer"]}, "FAILED_PRECONDITION", "search.techniques: prune"),
    ({"n_trials": 5000}, "INVALID_ARGUMENT", "search.n_trials"),
    ({"sampler": "grid"}, "INVALID_ARGUMENT", "search.sampler"),
    ({"max_steps": 3}, "INVALID_ARGUMENT", "search.max_steps"),
    ({"resume_from": "job-0123456789ab"}, "NOT_FOUND", "job-0123456789ab"),
]


@pytest.mark.parametrize(("spec", "code", "text"), BAD, ids=[t for _, _, t in BAD])
def test_bad_searches_are_refused_with_the_field(client, digits, spec, code, text):
    with pytest.raises(grpc.RpcError) as caught:
        client.jobs.CreateJob(search_request(**spec))
    assert caught.value.code().name == code
    assert text in caught.value.details()
    assert list(client.jobs.ListJobs(jobs_pb2.ListJobsRequest()).jobs) == []


def test_contradictions_with_the_rest_of_the_request(client, digits):
    both = search_request(constraints={"max_quality_drop": 0.01})
    both.quality_budget.max_accuracy_drop = 0.02
    recipes = search_request()
    recipes.recipes.add(name="x").steps.add(technique="quantize.dynamic")
    no_calibration = search_request(techniques=["quantize.static"])
    del no_calibration.datasets["calibration"]
    for request, code, text in (
        (both, "INVALID_ARGUMENT", "either search.constraints.max_quality_drop or quality"),
        (recipes, "INVALID_ARGUMENT", "either recipes or search"),
        (no_calibration, "FAILED_PRECONDITION", "quantize.static needs a calibration"),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            client.jobs.CreateJob(request)
        assert (caught.value.code().name, text in caught.value.details()) == (code, True)
    job = client.jobs.CreateJob(
        jobs_pb2.CreateJobRequest(
            model="digits",
            recipes=[jobs_pb2.Recipe(steps=[jobs_pb2.RecipeStep(technique="quantize.dynamic")])],
        )
    )
    with pytest.raises(grpc.RpcError) as caught:
        client.jobs.CreateJob(search_request(resume_from=job.id))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "is not a search" in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        get_search(client, model="digits")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_search_interrupted_by_a_restart_continues_its_study(tmp_path, digits_model):
    data = tmp_path / "data"
    server = GatewayServer(make_settings(data, measure_memory=False))
    server.start()
    try:
        with ParetoClient(f"127.0.0.1:{server.port}") as client:
            upload_digits(client, digits_model)
            request = search_request(n_trials=6)
            # ~0.3 s of timing per trial: the stop below lands while trials remain
            request.evaluation.CopyFrom(
                jobs_pb2.EvaluationSettings(batch_sizes=[64], iterations=300)
            )
            job = client.jobs.CreateJob(request)

            def finished() -> int:
                result = get_search(client, id=job.id)
                done = [t for t in result.trials if t.state != jobs_pb2.TRIAL_STATE_RUNNING]
                return len(done) >= 2

            wait_for(finished, "two finished trials", timeout_s=120)
    finally:
        server.stop(grace=1.0)
    server = GatewayServer(make_settings(data, measure_memory=False))
    server.start()
    try:
        with ParetoClient(f"127.0.0.1:{server.port}") as client:
            watch(client, job.id)
            final = get_job(client, job.id)
            result = get_search(client, id=job.id)
    finally:
        server.stop(grace=1.0)
    assert final.attempts == 2
    # What the trials find depends on where the stop fell (the sampler's seed counts the
    # trials before it); that every trial ran, and the search ended, does not.
    ended = final.state == STATE.JOB_STATE_SUCCEEDED or "no trial" in final.reason
    assert ended, final.reason
    assert len(counted(result, job.id)) == 6
    cut = [t for t in result.trials if "interrupted" in t.message]
    assert len(cut) <= 1  # the trial the stop cut short, if any
    check_frontier(result)
