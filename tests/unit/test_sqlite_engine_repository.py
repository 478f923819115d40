"""The compression engine's tables, against a real SQLite file and a real PostgreSQL
database (tests taking `repo` or `backend` run on both; job leases: test_job_leases.py)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pareto_core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from pareto_core.tensors import Signature, TensorSpec
from service.store.records import (
    JOB_CANCELLED,
    JOB_FAILED,
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_SUCCEEDED,
    DatasetRecord,
    JobEvent,
    JobRecord,
    ModelRecord,
    RecipeSpec,
    VariantRecord,
)
from service.store.sqlite_repository import _MIGRATIONS, SCHEMA_VERSION, SqliteRepository
from tests.helpers.store_backends import BACKENDS, StoreBackend, create_job, store_backend

SIG = Signature((TensorSpec("x", "FP32", (-1, 3)),), (TensorSpec("y", "FP32", (-1, 2)),))
RECIPE = RecipeSpec(
    "int8", ({"technique": "quantize.dynamic", "config": {"per_channel": True, "k": 3}},)
)
MEASUREMENT = {
    "size_bytes": 1000,
    "latency": [{"batch_size": 1, "p50_ms": 0.25, "p90_ms": 0.3}],
    "quality": {"accuracy": 0.97},
}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreBackend]:
    yield from store_backend(request, tmp_path)


@pytest.fixture
def repo(backend: StoreBackend):
    return backend.open()


def dataset(name: str = "calib", sha: str = "d" * 64) -> DatasetRecord:
    arrays = (TensorSpec("x", "FP32", (10, 3)), TensorSpec("labels", "INT64", (10,)))
    return DatasetRecord(name, sha, 99, arrays, 10, True, "held out")


def job(job_id: str = "job-1", model: str = "m", **kw) -> JobRecord:
    fields = {
        "datasets": {},
        "quality_budget": {"max_accuracy_drop": 0.01},
        "evaluation": {"batch_sizes": [1, 8], "iterations": 5, "runtime": "onnxruntime_cpu"},
    } | kw
    return JobRecord(id=job_id, model=model, model_version=1, recipes=(RECIPE,), **fields)


def variant(variant_id: str = "var-0001", model: str = "m", sha: str = "e" * 64) -> VariantRecord:
    return VariantRecord(
        id=variant_id,
        parent_model=model,
        parent_version=1,
        job_id="job-1",
        recipe=RECIPE,
        format="onnx",
        sha256=sha,
        size_bytes=1000,
        signature=SIG,
        metrics=MEASUREMENT,
        parent_metrics=MEASUREMENT | {"size_bytes": 4000},
        budget_ok=False,
        budget_reason="accuracy drop 0.02 > 0.01",
        report={"steps": [{"layers": 3}]},
    )


# -- schema ------------------------------------------------------------------------------


def test_a_version_1_database_is_migrated_and_keeps_its_models(tmp_path):
    path = tmp_path / "old.db"
    raw = sqlite3.connect(path)
    for statement in _MIGRATIONS[0]:
        raw.execute(statement)
    raw.execute("PRAGMA user_version=1")
    raw.commit()
    raw.close()
    repo = SqliteRepository(path)
    repo.add_model(ModelRecord("m", 0, "onnx", "a" * 64, 1, SIG), False)
    repo.add_dataset(dataset())
    assert repo.get_model("m").version == 1 and repo.get_dataset("calib").num_samples == 10
    repo.close()
    version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION >= 2


# -- datasets ----------------------------------------------------------------------------


def test_dataset_round_trip_duplicate_and_delete(repo):
    stored = repo.add_dataset(dataset())
    assert stored.created_at is not None
    assert repo.get_dataset("calib") == stored
    with pytest.raises(AlreadyExists, match="dataset 'calib' already exists"):
        repo.add_dataset(dataset(sha="f" * 64))
    repo.add_dataset(dataset("another"))
    assert [d.name for d in repo.list_datasets()] == ["another", "calib"]
    assert repo.delete_dataset("calib") == stored
    with pytest.raises(NotFound, match="dataset 'calib' not found"):
        repo.get_dataset("calib")
    with pytest.raises(NotFound, match="dataset 'calib' not found"):
        repo.delete_dataset("calib")


def test_a_dataset_cannot_be_deleted_while_an_active_job_uses_it(repo):
    repo.add_dataset(dataset())
    create_job(repo, job(datasets={"calibration": "calib"}))
    with pytest.raises(FailedPrecondition, match=r"'calib' is used by .*job-1"):
        repo.delete_dataset("calib")
    repo.claim_next_job()
    with pytest.raises(FailedPrecondition):
        repo.delete_dataset("calib")
    repo.update_job("job-1", state=JOB_SUCCEEDED)
    repo.delete_dataset("calib")  # a finished job no longer holds it


def test_a_job_naming_a_missing_dataset_is_not_created(repo):
    with pytest.raises(NotFound, match=r"datasets\['evaluation'\]: dataset 'gone' not found"):
        create_job(repo, job(datasets={"evaluation": "gone"}))
    assert repo.list_jobs() == []


# -- jobs --------------------------------------------------------------------------------


def test_create_job_is_queued_with_its_first_event(repo):
    repo.add_dataset(dataset())
    given = job(datasets={"calibration": "calib"}, state=JOB_SUCCEEDED, attempts=7)
    created = create_job(repo, given)
    assert (created.state, created.attempts, created.percent) == (JOB_QUEUED, 0, 0.0)
    assert created.created_at is not None and created.started_at is None
    assert repo.get_job("job-1") == created
    assert created.recipes == (RECIPE,) and created.evaluation["batch_sizes"] == [1, 8]
    (event,) = repo.list_events("job-1")
    assert (event.sequence, event.state) == (1, JOB_QUEUED) and "queued" in event.message
    with pytest.raises(AlreadyExists):
        create_job(repo, job())
    with pytest.raises(NotFound, match="job 'nope' not found"):
        repo.get_job("nope")


def test_list_jobs_newest_first_and_by_model(repo):
    for i, model in enumerate(["a", "b", "a"]):
        create_job(repo, job(f"job-{i}", model))
    assert [j.id for j in repo.list_jobs()] == ["job-2", "job-1", "job-0"]
    assert [j.id for j in repo.list_jobs("a")] == ["job-2", "job-0"]
    assert repo.list_jobs("c") == []


def test_claim_takes_the_oldest_queued_job(repo):
    assert repo.claim_next_job() is None
    create_job(repo, job("job-1"))
    create_job(repo, job("job-2"))
    claimed = repo.claim_next_job()
    assert (claimed.id, claimed.state, claimed.attempts) == ("job-1", JOB_RUNNING, 1)
    assert claimed.started_at is not None and repo.get_job("job-1") == claimed
    assert repo.claim_next_job().id == "job-2"
    assert repo.claim_next_job() is None


def test_jobs_are_counted_by_state(repo):
    assert repo.count_jobs_by_state() == {}
    for i in range(3):
        create_job(repo, job(f"job-{i}"))
    repo.claim_next_job()
    assert repo.count_jobs_by_state() == {JOB_QUEUED: 2, JOB_RUNNING: 1}


def test_two_repositories_on_one_database_never_claim_the_same_job(backend):
    setup = backend.open()
    for i in range(40):
        create_job(setup, job(f"job-{i:02d}"))
    claimers = [backend.open() for _ in range(2)]
    claimed: list[list[str]] = [[], []]
    start = threading.Barrier(2)

    def claim_all(k: int) -> None:
        start.wait()
        while (got := claimers[k].claim_next_job()) is not None:
            claimed[k].append(got.id)

    threads = [threading.Thread(target=claim_all, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = claimed[0] + claimed[1]
    assert sorted(everything) == [f"job-{i:02d}" for i in range(40)]  # each exactly once
    assert {j.attempts for j in setup.list_jobs()} == {1}


def test_update_job_sets_fields_and_final_states_stick(repo):
    create_job(repo, job())
    repo.claim_next_job()
    updated = repo.update_job("job-1", percent=40.0, variant_ids=["var-1"])
    assert (updated.percent, updated.variant_ids, updated.finished_at) == (40.0, ("var-1",), None)
    cancelled = repo.update_job("job-1", state=JOB_CANCELLED, reason="cancelled by the user")
    assert cancelled.finished_at is not None and repo.get_job("job-1") == cancelled
    # a late write from the worker cannot resurrect or change it
    late = repo.update_job("job-1", state=JOB_SUCCEEDED, percent=100.0, variant_ids=["var-2"])
    assert late == cancelled and repo.get_job("job-1") == cancelled


def test_update_job_rejects_bad_fields(repo):
    create_job(repo, job())
    with pytest.raises(TypeError, match="attempts"):
        repo.update_job("job-1", attempts=5)
    with pytest.raises(InvalidArgument, match="state must be one of"):
        repo.update_job("job-1", state="DONE")
    with pytest.raises(NotFound):
        repo.update_job("job-9", percent=1.0)
    assert repo.get_job("job-1").state == JOB_QUEUED


def test_recover_requeues_running_jobs_until_max_attempts(repo):
    for i in range(4):
        create_job(repo, job(f"job-{i}"))
    repo.claim_next_job()  # job-0: attempt 1
    repo.claim_next_job()  # job-1: attempt 1, then finished
    repo.update_job("job-1", state=JOB_SUCCEEDED)
    repo.claim_next_job()  # job-2: attempt 1
    changed = repo.recover_interrupted_jobs(max_attempts=2)
    assert [(j.id, j.state) for j in changed] == [("job-0", JOB_QUEUED), ("job-2", JOB_QUEUED)]
    assert repo.get_job("job-1").state == JOB_SUCCEEDED
    assert repo.get_job("job-3").state == JOB_QUEUED

    again = repo.claim_next_job()
    assert (again.id, again.attempts) == ("job-0", 2)
    (failed,) = repo.recover_interrupted_jobs(max_attempts=2)
    assert (failed.id, failed.state) == ("job-0", JOB_FAILED)
    assert "interrupted" in failed.reason and "2 attempt(s)" in failed.reason
    assert failed.finished_at is not None and repo.get_job("job-0") == failed
    assert repo.recover_interrupted_jobs(max_attempts=2) == []


def test_events_are_numbered_per_job(repo):
    create_job(repo, job("job-1"))
    create_job(repo, job("job-2"))
    first = repo.add_event(JobEvent("job-1", 0, JOB_RUNNING, "step", 10.0, "m", {"loss": 0.5}))
    assert first.sequence == 2 and first.time is not None  # 1 is the QUEUED event
    repo.add_event(JobEvent("job-1", 99, JOB_RUNNING, "step", 20.0, "n"))
    assert repo.add_event(JobEvent("job-2", 0, JOB_RUNNING)).sequence == 2
    events = repo.list_events("job-1")
    assert [e.sequence for e in events] == [1, 2, 3]
    assert events[1] == first and events[1].metrics == {"loss": 0.5}
    assert [e.sequence for e in repo.list_events("job-1", from_sequence=3)] == [3]
    assert repo.list_events("nope") == []
    with pytest.raises(NotFound):
        repo.add_event(JobEvent("nope", 0, JOB_RUNNING))
    with pytest.raises(InvalidArgument, match=r"event\.state"):
        repo.add_event(JobEvent("job-1", 0, "BUSY"))


def test_concurrent_events_from_two_repositories_get_distinct_sequences(backend):
    repos = [backend.open() for _ in range(2)]
    create_job(repos[0], job())

    def emit(r) -> None:
        for i in range(25):
            r.add_event(JobEvent("job-1", 0, JOB_RUNNING, "s", float(i)))

    threads = [threading.Thread(target=emit, args=(r,)) for r in repos]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [e.sequence for e in repos[1].list_events("job-1")] == list(range(1, 52))


# -- variants and blobs ----------------------------------------------------------------


def test_variant_round_trip_list_and_delete(repo):
    stored = repo.add_variant(variant())
    assert stored.created_at is not None and stored.serving_name == "m.var-0001"
    got = repo.get_variant("var-0001")
    assert got == stored and got.metrics["latency"][0]["p50_ms"] == 0.25
    assert got.recipe == RECIPE and got.signature == SIG and not got.budget_ok
    with pytest.raises(AlreadyExists):
        repo.add_variant(variant())
    repo.add_variant(variant("var-0002", model="other"))
    repo.add_variant(variant("var-0003"))
    assert [v.id for v in repo.list_variants()] == ["var-0001", "var-0002", "var-0003"]
    assert [v.id for v in repo.list_variants("m")] == ["var-0001", "var-0003"]
    assert repo.delete_variant("var-0001") == stored
    with pytest.raises(NotFound, match="variant 'var-0001' not found"):
        repo.get_variant("var-0001")
    with pytest.raises(NotFound):
        repo.delete_variant("var-0001")


def test_referenced_blobs_cover_models_datasets_and_variants(repo):
    repo.add_model(ModelRecord("m", 0, "onnx", "a" * 64, 1, SIG), False)
    repo.add_dataset(dataset(sha="b" * 64))
    repo.add_variant(variant(sha="c" * 64))
    # shares the model's blob (its parent is another model: "m" can go while it stays)
    repo.add_variant(replace(variant("var-0002", model="other"), sha256="a" * 64))
    assert repo.referenced_blobs() == {"a" * 64, "b" * 64, "c" * 64}
    repo.delete_dataset("calib")
    repo.delete_variant("var-0001")
    assert repo.referenced_blobs() == {"a" * 64}
    repo.delete_model("m")
    assert repo.referenced_blobs() == {"a" * 64}  # still the variant's


def test_a_model_with_an_active_job_or_a_variant_cannot_be_deleted(repo):
    repo.add_model(ModelRecord("m", 0, "onnx", "a" * 64, 1, SIG), False)
    repo.create_job(job())
    with pytest.raises(FailedPrecondition, match="job-1"):
        repo.delete_model("m")
    repo.update_job("job-1", state=JOB_CANCELLED)
    repo.add_variant(variant())
    with pytest.raises(FailedPrecondition, match="var-0001"):
        repo.delete_model("m")
    repo.delete_variant("var-0001")
    assert [r.name for r in repo.delete_model("m")] == ["m"]


def test_a_job_for_a_model_that_is_gone_is_not_created(repo):
    with pytest.raises(NotFound, match="model 'm' version 1 not found"):
        repo.create_job(job())
    assert repo.list_jobs() == []
