"""The recipes in examples/recipes/ against a real gateway, with the example datasets.

Every recipe file must pass CreateJob's validation (techniques, configs, datasets, budget);
one of them, static int8 of the digits CNN, runs to the end through a real worker with the
real technique, and its variant is measured and served.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tc

from examples.datasets import write_example_datasets
from pareto.v1 import jobs_pb2, variants_pb2
from pareto_cli.client import ParetoClient
from pareto_cli.datasets import upload_dataset
from pareto_cli.jobs import load_recipe_file

RECIPES = sorted((Path(__file__).parents[2] / "examples" / "recipes").glob("*.yaml"))
STATE = jobs_pb2.JobState


@pytest.fixture(scope="module")
def example_datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_example_datasets(tmp_path_factory.mktemp("datasets"))


@pytest.fixture
def uploaded(client: ParetoClient, digits_model, minilm_model, example_datasets) -> None:
    client.upload(digits_model.path, "digits")
    client.upload(minilm_model.path, "minilm")
    for name, path in example_datasets.items():
        upload_dataset(client, path, name)


def request_for(recipe: Path) -> jobs_pb2.CreateJobRequest:
    request = load_recipe_file(recipe)
    request.model = recipe.name.split("-")[0]  # digits-*.yaml, minilm-*.yaml
    return request


def test_there_are_example_recipes():
    assert {p.name.split("-")[0] for p in RECIPES} == {"digits", "minilm"}


def test_every_example_recipe_is_accepted_by_create_job(client: ParetoClient, uploaded):
    for recipe in RECIPES:
        job = client.jobs.CreateJob(request_for(recipe))
        assert job.state in (STATE.JOB_STATE_QUEUED, STATE.JOB_STATE_RUNNING), recipe.name
        assert len(job.recipes) >= 1
        client.jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id))


def test_static_int8_of_the_digits_cnn_end_to_end(
    client: ParetoClient, triton: tc.InferenceServerClient, uploaded, digits_model
):
    request = request_for(Path(__file__).parents[2] / "examples/recipes/digits-static.yaml")
    request.evaluation.iterations = 5  # the bench measures speed; this checks the path
    job = client.jobs.CreateJob(request)
    events = list(client.jobs.WatchJob(jobs_pb2.WatchJobRequest(id=job.id), timeout=240))
    job = client.jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id))
    assert job.state == STATE.JOB_STATE_SUCCEEDED, (job.reason, [e.message for e in events])
    (variant_id,) = job.variant_ids

    variant = client.variants.GetVariant(variants_pb2.GetVariantRequest(id=variant_id))
    assert variant.parent_model == "digits"
    assert variant.recipe.steps[0].technique == "quantize.static"
    assert variant.metrics.size_bytes < 0.5 * variant.parent_metrics.size_bytes  # int8
    assert variant.budget_ok, variant.budget_reason
    assert "accuracy" in variant.metrics.quality and variant.metrics.memory_bytes > 0

    x = digits_model.X_test[:64].astype(np.float32)
    tensor = tc.InferInput("pixels", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    by_version = triton.infer("digits", [tensor], model_version=variant_id).as_numpy("logits")
    by_name = triton.infer(variant.serving_name, [tensor]).as_numpy("logits")
    parent_logits = triton.infer("digits", [tensor]).as_numpy("logits")
    np.testing.assert_array_equal(by_version, by_name)
    agreement = (by_version.argmax(1) == parent_logits.argmax(1)).mean()
    assert agreement >= 0.95
