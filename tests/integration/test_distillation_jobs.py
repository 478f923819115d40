"""Training techniques as real jobs: a digits distillation through the server and worker,
served at once; a training job whose worker is killed (kill -9 of the server, which takes
its workers) resumes from its checkpoint after a restart; bad requests change nothing."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from pareto.v1 import jobs_pb2
from pareto.v1.variants_pb2 import GetVariantRequest
from pareto_cli.client import ParetoClient
from service.jobs.checkpoints import job_checkpoints
from service.server import GatewayServer
from tests.helpers.gateway_settings import make_settings
from tests.helpers.jobs import (
    STATE,
    create_job,
    get_job,
    infer_digits,
    is_gone,
    step,
    upload_dataset,
    wait_for,
    watch,
)

DISTILL = {"width": 0.35, "init": "teacher", "lr": 0.003}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayServer]:
    """The shared fixture's real server, without the memory probe (this tests training)."""
    server = GatewayServer(make_settings(tmp_path / "data", measure_memory=False))
    server.start()
    yield server
    server.stop(grace=1.0)


@pytest.fixture(scope="module")
def five_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torch.export student whose output has 5 classes where the teacher has 10."""

    class Five(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(64, 5)

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return self.linear(pixels.flatten(1))

    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(
        Five(), (torch.zeros(2, 1, 8, 8),), dynamic_shapes={"pixels": {0: batch}}
    )
    path = tmp_path_factory.mktemp("students") / "five.pt2"
    torch.export.save(program, path)
    return path


@pytest.fixture
def digits(client: ParetoClient, digits_model) -> np.ndarray:
    """The digits CNN as "digits", a labeled training subset and the held-out split."""
    from examples.models import digits_split

    x_train, x_test, y_train, y_test = digits_split(0)
    client.upload(digits_model.path, "digits")
    upload_dataset(client, "digits-train", pixels=x_train[:600], labels=y_train[:600])
    upload_dataset(client, "digits-pixels", pixels=x_train[:200])
    upload_dataset(client, "digits-eval", pixels=x_test, labels=y_test)
    return x_test


def distill_recipe(**config: object) -> jobs_pb2.Recipe:
    return jobs_pb2.Recipe(name="student", steps=[step("distill.knowledge", **(DISTILL | config))])


def test_a_distillation_job_streams_and_its_student_is_served(client, triton, digits, gateway):
    datasets = {"training": "digits-train", "evaluation": "digits-eval"}
    budget = jobs_pb2.QualityBudget(max_accuracy_drop=0.15)  # a 1/4 student, 12 short epochs
    job = create_job(client, distill_recipe(epochs=12), datasets=datasets, quality_budget=budget)
    events = watch(client, job.id)
    done = get_job(client, job.id)
    assert done.state == STATE.JOB_STATE_SUCCEEDED, (done.reason, [e.message for e in events])
    training = [e for e in events if "loss" in e.metrics]
    assert training and all({"epoch", "step"} <= set(e.metrics) for e in training)

    (variant_id,) = done.variant_ids
    variant = gateway.repo.get_variant(variant_id)
    report = variant.report["steps"][0]["report"]
    assert report["params_student"] <= report["params_teacher"] / 4
    assert report["training"]["epochs_run"] == 12 and report["training"]["resumed_from_epoch"] == 0
    assert len(report["training"]["heldout_per_epoch"]) == 12  # events are throttled; this is not
    assert variant.metrics["parameters"] <= variant.parent_metrics["parameters"] / 4
    assert variant.metrics["quality"]["accuracy"] > 0.8

    student = infer_digits(triton, digits, model_version=variant_id)
    teacher = infer_digits(triton, digits)
    assert student.shape == teacher.shape == (len(digits), 10)
    assert (student.argmax(1) == teacher.argmax(1)).mean() > 0.8
    assert not job_checkpoints(gateway.settings.data_dir, job.id).parent.exists()


BAD_REQUESTS = [  # (technique, config, training dataset, code, part of the message)
    ("distill.knowledge", {"student": "five"}, "digits-train", "FAILED_PRECONDITION",
     "teacher 'logits' is FP32[batch,10], student 'linear' is FP32[batch,5]"),
    ("distill.knowledge", {"student": "digits-onnx"}, "digits-train", "FAILED_PRECONDITION",
     "a student must be a torch.export archive (.pt2)"),
    ("distill.knowledge", {"alpha": 0.0}, "digits-pixels", "INVALID_ARGUMENT",
     "dataset 'digits-pixels' has no 'labels' array"),
    ("quantize.qat", {}, "digits-pixels", "INVALID_ARGUMENT", "has no 'labels' array"),
    ("prune.gradual", {}, "digits-pixels", "INVALID_ARGUMENT", "has no 'labels' array"),
    ("distill.knowledge", {"teacher": "absent"}, "digits-train", "NOT_FOUND", "'absent'"),
    ("distill.knowledge", {"width": 2}, "digits-train", "INVALID_ARGUMENT",
     "recipes[0].steps[0].config.width"),
]  # fmt: skip


def test_bad_training_requests_are_refused_and_store_nothing(
    client, digits, digits_model, five_pt2
):
    client.upload(five_pt2, "five")
    client.upload(digits_model.path, "digits-onnx")
    for technique, config, training, code, pattern in BAD_REQUESTS:
        recipe = jobs_pb2.Recipe(steps=[step(technique, **config)])
        with pytest.raises(grpc.RpcError) as err:
            create_job(client, recipe, datasets={"training": training})
        assert err.value.code() == getattr(grpc.StatusCode, code), (technique, config)
        assert pattern in err.value.details(), err.value.details()
    assert list(client.jobs.ListJobs(jobs_pb2.ListJobsRequest()).jobs) == []
    recipe = jobs_pb2.Recipe(steps=[step("distill.knowledge")])  # a transfer set without labels
    assert create_job(client, recipe, datasets={"training": "digits-pixels"}).id


def test_a_killed_training_job_resumes_from_its_checkpoint(tmp_path, digits_model):
    from examples.models import digits_split
    from service.store.sqlite_repository import SqliteRepository
    from tests.helpers.serve_process import start_server

    data_dir = tmp_path / "data"
    x_train, _, y_train, _ = digits_split(0)
    process, address = start_server(data_dir)
    try:
        with ParetoClient(address) as client:
            client.upload(digits_model.path, "digits")
            upload_dataset(client, "digits-train", pixels=x_train[:400], labels=y_train[:400])
            recipe = distill_recipe(epochs=60, batch_size=16)
            job = create_job(client, recipe, datasets={"training": "digits-train"})
        checkpoints = job_checkpoints(data_dir, job.id)
        wait_for(lambda: any(checkpoints.rglob("state.pt")), "a first checkpoint", 120)
        worker = next(int(p.name) for p in Path("/proc").iterdir() if _is_worker(p, job.id))
        process.send_signal(signal.SIGKILL)  # the worker dies with it (PR_SET_PDEATHSIG)
        process.wait()
        wait_for(lambda: is_gone(worker), "the worker to die with the server")
    finally:
        process.kill()
    repo = SqliteRepository(data_dir / "metadata.db")
    assert repo.get_job(job.id).state == "RUNNING"
    repo.close()

    process, address = start_server(data_dir)
    try:
        with ParetoClient(address) as client:
            assert watch(client, job.id)[-1].state == STATE.JOB_STATE_SUCCEEDED
            done = get_job(client, job.id)
            variant = client.variants.GetVariant(GetVariantRequest(id=done.variant_ids[0]))
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert done.attempts == 2
    repo = SqliteRepository(data_dir / "metadata.db")
    training = repo.get_variant(variant.id).report["steps"][0]["report"]["training"]
    repo.close()
    assert 1 <= training["resumed_from_epoch"] < 60 and training["epochs_run"] == 60
    assert len(training["loss_per_epoch"]) == 60
    assert not checkpoints.parent.exists()  # removed when the job ended


def _is_worker(proc: Path, job_id: str) -> bool:
    try:
        return proc.name.isdigit() and job_id.encode() in (proc / "cmdline").read_bytes()
    except OSError:
        return False
