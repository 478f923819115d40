"""service.jobs.create: a CreateJob request becomes a QUEUED JobRecord, or a clear error."""

from __future__ import annotations

import hashlib
import re

import pytest

import tests.helpers.job_techniques  # noqa: F401  (registers the test.* techniques)
from pareto_core.errors import FailedPrecondition, InvalidArgument, NotFound
from pareto_core.tensors import TensorSpec
from service.catalog.uploads import UploadRequest
from service.jobs.create import JobRequest, validate_job
from service.store.records import DatasetRecord, RecipeSpec

SCALE = {"technique": "test.scale", "config": {"factor": 2}}


@pytest.fixture
def repo(store, onnx_bytes):
    """A store holding model "tiny" (input X FP32 [-1, 3]) and two datasets."""
    sha = hashlib.sha256(onnx_bytes).hexdigest()
    with store.uploader.begin(UploadRequest("tiny", "onnx", len(onnx_bytes), sha)) as upload:
        upload.write(onnx_bytes)
        upload.finish()
    for name, shape in (("good", (20, 3)), ("wide", (20, 4))):
        arrays = (TensorSpec("X", "FP32", shape), TensorSpec("labels", "INT64", (20,)))
        store.repo.add_dataset(DatasetRecord(name, "0" * 64, 1, arrays, 20, True))
    return store.repo


def request(**fields) -> JobRequest:
    values = {"model": "tiny", "recipes": [RecipeSpec("", (SCALE,))]} | fields
    return JobRequest(**values)


def test_a_valid_request_becomes_a_queued_record(repo):
    job = validate_job(
        repo,
        request(
            recipes=[
                RecipeSpec("", (SCALE, {"technique": "test.slow", "config": {"seconds": 0}})),
                RecipeSpec("mine", ({"technique": "test.scale"},)),
            ],
            datasets={"calibration": "good"},
            quality_budget={"min_top1_agreement": 0.9},
            evaluation={"batch_sizes": [8, 1, 8]},
        ),
    )
    assert re.fullmatch(r"job-[0-9a-f]{12}", job.id)
    assert (job.model, job.model_version, job.state) == ("tiny", 1, "QUEUED")
    assert [r.name for r in job.recipes] == ["test.scale+test.slow", "mine"]
    # configs are stored normalised, defaults filled in
    assert job.recipes[0].steps[0] == {"technique": "test.scale", "config": {"factor": 2.0}}
    assert job.recipes[0].steps[1]["config"] == {"seconds": 0.0, "pid_file": ""}
    assert job.datasets == {"calibration": "good"}
    assert job.quality_budget == {"min_top1_agreement": 0.9}
    assert job.evaluation == {"batch_sizes": [1, 8], "iterations": 50, "runtime": "onnxruntime_cpu"}
    assert repo.list_jobs() == []  # validation stores nothing


def test_default_names_are_made_unique_explicit_duplicates_are_refused(repo):
    job = validate_job(repo, request(recipes=[RecipeSpec("", (SCALE,))] * 3))
    assert [r.name for r in job.recipes] == ["test.scale", "test.scale#2", "test.scale#3"]
    with pytest.raises(InvalidArgument, match=r"recipes\[1\]\.name 'a' .* recipes\[0\]"):
        validate_job(repo, request(recipes=[RecipeSpec("a", (SCALE,))] * 2))


@pytest.mark.parametrize(
    ("fields", "error", "pattern"),
    [
        ({"model": "nope"}, NotFound, r"model 'nope' not found"),
        ({"model_version": 7}, NotFound, r"no version 7"),
        ({"recipes": []}, InvalidArgument, r"at least one recipe"),
        ({"recipes": [RecipeSpec("x", ())]}, InvalidArgument, r"recipes\[0\]\.steps"),
        (
            {"recipes": [RecipeSpec("", ({"technique": "quantize.magic"},))]},
            InvalidArgument,
            r"unknown technique 'quantize.magic'; known techniques: .*test\.scale",
        ),
        (
            {
                "recipes": [
                    RecipeSpec("", (SCALE,)),
                    RecipeSpec("", (SCALE, {"technique": "test.scale", "config": {"factor": 99}})),
                ]
            },
            InvalidArgument,
            r"recipes\[1\]\.steps\[1\]\.config\.factor",
        ),
        (
            {"recipes": [RecipeSpec("", ({"technique": "test.scale", "config": {"bits": 4}},))]},
            InvalidArgument,
            r"recipes\[0\]\.steps\[0\]\.config\.bits",
        ),
        (
            {"recipes": [RecipeSpec("", ({"technique": "test.torch_only"},))]},
            FailedPrecondition,
            r"takes torch_export models, but model 'tiny' version 1 is 'onnx'.*\.pt2",
        ),
        ({"datasets": {"teaching": "good"}}, InvalidArgument, r"unknown role 'teaching'"),
        ({"datasets": {"calibration": "missing"}}, NotFound, r"dataset 'missing'"),
        ({"datasets": {"calibration": "wide"}}, InvalidArgument, r"'X'"),
        ({"quality_budget": {"min_cosine": 1.5}}, InvalidArgument, r"min_cosine"),
        ({"evaluation": {"batch_sizes": [1, 0]}}, InvalidArgument, r"evaluation\.batch_sizes\[1\]"),
        ({"evaluation": {"batch_sizes": [5000]}}, InvalidArgument, r"1\.\.4096, got 5000"),
        ({"evaluation": {"iterations": 10_001}}, InvalidArgument, r"evaluation\.iterations"),
        (
            {"evaluation": {"runtime": "tvm"}},
            InvalidArgument,
            r"evaluation\.runtime: unknown runtime 'tvm'.*onnxruntime_cpu",
        ),
    ],
)
def test_bad_requests_get_the_right_error_and_store_nothing(repo, fields, error, pattern):
    with pytest.raises(error, match=pattern):
        validate_job(repo, request(**fields))
    assert repo.list_jobs() == []
