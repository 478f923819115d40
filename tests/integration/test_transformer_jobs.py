"""Transformer compression through a real server and real worker processes: MiniLM quantized
by quantize.static (transformer mode) and quantize.weight_only (GPTQ) in one job, measured
on held-out sentences and stored; a token-level export whose variant breaks the budget is
refused with a message that says which measure failed and how to change it; bad configs
are INVALID_ARGUMENT naming the field, pruning a model without a Hugging Face folder is
FAILED_PRECONDITION, and nothing is stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from pareto.v1 import jobs_pb2
from pareto_cli.client import ParetoClient
from service.server import GatewayServer
from tests.helpers.gateway_settings import make_settings
from tests.helpers.jobs import STATE, create_job, get_job, step, upload_dataset, watch
from tests.helpers.text_models import sentence_sets


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayServer]:
    """The real server, without the per-model memory probe (three MiniLM sessions)."""
    server = GatewayServer(make_settings(tmp_path / "data", measure_memory=False))
    server.start()
    yield server
    server.stop(grace=1.0)


@pytest.fixture
def texts(client: ParetoClient) -> None:
    calibration, held_out = sentence_sets(calibration=32, held_out=32)
    upload_dataset(client, "text-calib", **calibration)
    upload_dataset(client, "text-eval", **held_out)


DATASETS = {"calibration": "text-calib", "evaluation": "text-eval"}


def steps_report(gateway: GatewayServer, variant_id: str) -> dict:
    return gateway.repo.get_variant(variant_id).report["steps"][0]["report"]


def test_static_and_weight_only_minilm_jobs(client, gateway, texts, minilm_model) -> None:
    client.upload(minilm_model.path, "minilm")
    static = jobs_pb2.Recipe(name="static", steps=[step("quantize.static", calibration_samples=32)])
    gptq = jobs_pb2.Recipe(
        name="gptq",
        steps=[step("quantize.weight_only", algorithm="gptq", calibration_samples=32)],
    )
    budget = jobs_pb2.QualityBudget(min_cosine=0.98)
    job = create_job(client, static, gptq, model="minilm", datasets=DATASETS, quality_budget=budget)
    events = watch(client, job.id)
    done = get_job(client, job.id)
    assert done.state == STATE.JOB_STATE_SUCCEEDED, (done.reason, [e.message for e in events])
    variants = {gateway.repo.get_variant(v).recipe.name: v for v in done.variant_ids}
    assert set(variants) == {"static", "gptq"}

    static_report = steps_report(gateway, variants["static"])
    assert static_report["transformer"]["float_attention_matmuls"] == 12
    assert static_report["ops"]["QuantizeLinear"] == 24
    gptq_report = steps_report(gateway, variants["gptq"])
    assert gptq_report["ops"]["MatMulNBits"] == 36
    assert gptq_report["ops"]["GatherBlockQuantized"] == 1
    for name, variant_id in variants.items():
        variant = gateway.repo.get_variant(variant_id)
        quality = variant.metrics["quality"]
        assert variant.budget_ok and quality["cosine_mean"] >= 0.98, (name, quality)
        assert quality["nn_overlap_at_5"] > 0.7 and "pairwise_spearman" in quality
    gptq_size = gateway.repo.get_variant(variants["gptq"]).metrics["size_bytes"]
    parent_size = gateway.repo.get_variant(variants["gptq"]).parent_metrics["size_bytes"]
    assert gptq_size <= 0.2 * parent_size


def test_a_token_level_variant_that_breaks_the_budget_says_why(
    client, gateway, texts, minilm_tokens_model
) -> None:
    client.upload(minilm_tokens_model.path, "minilm-tokens")
    recipe = jobs_pb2.Recipe(name="int8", steps=[step("quantize.dynamic")])
    budget = jobs_pb2.QualityBudget(min_cosine=0.9999)
    job = create_job(
        client, recipe, model="minilm-tokens", datasets=DATASETS, quality_budget=budget
    )
    assert watch(client, job.id)[-1].state == STATE.JOB_STATE_FAILED
    reason = get_job(client, job.id).reason
    assert "int8: quality budget not met: cosine_mean 0.9" in reason
    assert "below min_cosine 0.9999" in reason and "real tokens" in reason
    assert "pooled_cosine_mean 0.99" in reason
    assert "lower quality_budget.min_cosine to 0.9" in reason and "keep_failing" in reason
    assert gateway.repo.list_variants("minilm-tokens") == []


@pytest.mark.parametrize(
    ("technique", "config", "field"),
    [
        ("quantize.static", {"smooth_quant_alpha": 1.5}, "config.smooth_quant_alpha"),
        ("quantize.weight_only", {"bits": 3}, "config.bits"),
        ("quantize.weight_only", {"block_size": 48}, "config.block_size"),
        ("prune.transformer", {"head_ratio": 1.0}, "config.head_ratio"),
    ],
)
def test_bad_transformer_configs_are_invalid_and_store_nothing(
    client, gateway, texts, minilm_model, technique, config, field
) -> None:
    client.upload(minilm_model.path, "minilm")
    recipe = jobs_pb2.Recipe(steps=[step(technique, **config)])
    with pytest.raises(grpc.RpcError) as err:
        create_job(client, recipe, model="minilm", datasets=DATASETS)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"recipes[0].steps[0].{field}" in err.value.details()
    assert list(client.jobs.ListJobs(jobs_pb2.ListJobsRequest()).jobs) == []
    assert gateway.repo.list_variants("minilm") == []


def test_pruning_a_model_without_a_hugging_face_folder_is_refused(
    client, gateway, texts, minilm_model
) -> None:
    """prune.transformer needs the model's torch source (the uploaded Hugging Face folder);
    an ONNX upload has none: FAILED_PRECONDITION at CreateJob naming the step, no job."""
    client.upload(minilm_model.path, "minilm")
    recipe = jobs_pb2.Recipe(steps=[step("prune.transformer", head_ratio=0.5)])
    with pytest.raises(grpc.RpcError) as err:
        create_job(client, recipe, model="minilm", datasets=DATASETS)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = err.value.details()
    assert "recipes[0].steps[0].config" in details
    assert "prune.transformer needs a model uploaded as a Hugging Face folder" in details
    assert list(client.jobs.ListJobs(jobs_pb2.ListJobsRequest()).jobs) == []
    assert gateway.repo.list_variants("minilm") == []
