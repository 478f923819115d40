"""Malformed recipes at CreateJob: random technique names and configs (known and unknown
fields, wrong types, NaN/inf, deep nesting), datasets, budgets and evaluation settings.
The scheduler is stopped (tests/fuzz/conftest.py), so an accepted job stays QUEUED."""

from __future__ import annotations

import math

import grpc
from google.protobuf import struct_pb2
from hypothesis import given
from hypothesis import strategies as st

from compressors import registry
from pareto.v1 import jobs_pb2
from tests.helpers.fuzz import DATASET, DEADLINE_S, MODEL, TALLY, Fuzzed, fuzz

TECHNIQUES = registry.names()
FIELDS = sorted({f for n in TECHNIQUES for f in registry.get(n).config_cls.model_fields})
ROLES = ["calibration", "training", "evaluation"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 0.5, -1, 1e308, math.nan, math.inf, "", "minmax", "int8"]),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(max_size=8), inner, max_size=3),
    ),
    max_leaves=8,
)
configs = st.dictionaries(
    st.one_of(st.sampled_from(FIELDS), st.text(max_size=10)), json_values, max_size=4
)
techniques = st.one_of(
    st.sampled_from(TECHNIQUES),
    st.sampled_from(TECHNIQUES),
    st.sampled_from(["", "quantize", "QUANTIZE.DYNAMIC", "quantize.dynamic ", "x" * 300]),
    st.text(max_size=20),
)


def struct_of(data: dict) -> struct_pb2.Struct:
    config = struct_pb2.Struct()
    config.update(data)
    return config


@st.composite
def recipes(draw: st.DrawFn) -> jobs_pb2.Recipe:
    recipe = jobs_pb2.Recipe(name=draw(st.one_of(st.just(""), st.text(max_size=20))))
    for _ in range(draw(st.integers(0, 3))):
        recipe.steps.add(technique=draw(techniques), config=struct_of(draw(configs)))
    return recipe


@st.composite
def budgets(draw: st.DrawFn) -> jobs_pb2.QualityBudget:
    budget = jobs_pb2.QualityBudget(keep_failing=draw(st.booleans()))
    for field in ("max_accuracy_drop", "min_cosine", "min_top1_agreement"):
        if draw(st.booleans()):
            setattr(budget, field, draw(st.floats(allow_nan=True, allow_infinity=True)))
    return budget


@st.composite
def create_job_requests(draw: st.DrawFn) -> jobs_pb2.CreateJobRequest:
    int64 = st.integers(-(2**63), 2**63 - 1)
    return jobs_pb2.CreateJobRequest(
        model=draw(st.one_of(st.just(MODEL), st.just(MODEL), st.text(max_size=10))),
        model_version=draw(st.one_of(st.sampled_from([0, 1, 2, -1]), int64)),
        recipes=draw(st.lists(recipes(), max_size=3)),
        datasets=draw(
            st.dictionaries(
                st.one_of(st.sampled_from(ROLES), st.text(max_size=10)),
                st.one_of(st.just(DATASET), st.sampled_from(["", "nope", "a/b"])),
                max_size=3,
            )
        ),
        quality_budget=draw(budgets()),
        evaluation=jobs_pb2.EvaluationSettings(
            batch_sizes=draw(st.lists(st.one_of(st.integers(0, 8), int64), max_size=3)),
            iterations=draw(st.one_of(st.integers(0, 100), int64)),
            runtime=draw(st.sampled_from(["", "onnxruntime_cpu", "tensorrt_gpu", "nope"])),
        ),
    )


@fuzz(800)
@given(request=create_job_requests())
def test_fuzz_create_job(fuzzed: Fuzzed, request):
    create = fuzzed.client.jobs.CreateJob
    fuzzed.call("CreateJob", lambda: create(request, timeout=DEADLINE_S))


def test_huge_technique_name_is_refused_briefly(fuzzed: Fuzzed):
    request = jobs_pb2.CreateJobRequest(model=MODEL)
    request.recipes.add().steps.add(technique="t" * 1_000_000)
    create = fuzzed.client.jobs.CreateJob
    code = fuzzed.call("CreateJob (1 MB technique)", lambda: create(request, timeout=DEADLINE_S))
    # Not RESOURCE_EXHAUSTED "Stream removed": the message is cut to fit in the trailers.
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert fuzzed.last_details.startswith("unknown technique 'ttt")
    assert len(fuzzed.last_details) < 2100


def test_jobs_accepted_are_listed_and_the_server_serves(fuzzed: Fuzzed):
    listed = fuzzed.client.jobs.ListJobs(jobs_pb2.ListJobsRequest(), timeout=DEADLINE_S).jobs
    assert all(job.model == MODEL for job in listed)
    assert len(listed) == TALLY["CreateJob"]["OK"]  # a refused request stored nothing
    fuzzed.infer_ok()
