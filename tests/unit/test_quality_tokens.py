"""Quality that understands transformer outputs: token-level outputs compared on real tokens
only, mask-pooled sentence embeddings, nearest-neighbour agreement, token accuracy; and a
job's evaluation of a standard Hugging Face export (last_hidden_state) through
`compressors.measure.evaluate`."""

from __future__ import annotations

import numpy as np
import pytest

from compressors import registry
from compressors.base import Dataset, StepContext
from compressors.graph.files import artifact_for
from compressors.measure.evaluate import EvaluationSettings, evaluate
from compressors.measure.neighbours import neighbour_agreement
from compressors.measure.quality import quality_metrics
from compressors.measure.tokens import mean_pool, token_mask
from tests.helpers.text_models import sentence_sets


def tokens(seed: int = 0, batch: int = 8, seq: int = 6, dim: int = 16) -> tuple:
    rng = np.random.default_rng(seed)
    outputs = rng.normal(size=(batch, seq, dim)).astype(np.float32)
    lengths = rng.integers(1, seq + 1, size=batch)
    mask = np.arange(seq)[None, :] < lengths[:, None]
    return outputs, mask


def test_the_attention_mask_is_found_among_the_inputs() -> None:
    ids = np.ones((2, 4), np.int64)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], np.int64)
    found = token_mask({"input_ids": ids, "attention_mask": mask})
    assert found is not None and (found == mask.astype(bool)).all()
    assert token_mask({"pixels": np.zeros((2, 4), np.float32)}) is None
    assert token_mask({"input_mask": np.full((2, 4), 2, np.int64)}) is None  # not 0/1
    assert token_mask({"input_mask": mask}) is not None


def test_padding_positions_do_not_count() -> None:
    outputs, mask = tokens()
    noisy = outputs.copy()
    noisy[~mask] += np.random.default_rng(1).normal(size=noisy[~mask].shape) * 10
    quality = quality_metrics(noisy, outputs, mask=mask)
    assert quality["cosine_mean"] == pytest.approx(1.0)
    assert quality["pooled_cosine_mean"] == pytest.approx(1.0)
    assert quality["max_abs_error"] == 0.0
    unmasked = quality_metrics(noisy, outputs)
    assert unmasked["cosine_mean"] < 0.9 and "pooled_cosine_mean" not in unmasked


def test_pooled_cosine_is_of_the_mean_of_the_real_tokens() -> None:
    outputs, mask = tokens()
    changed = outputs + np.random.default_rng(2).normal(size=outputs.shape) * 0.3
    quality = quality_metrics(changed, outputs, mask=mask)
    a, b = mean_pool(changed, mask), mean_pool(outputs, mask)
    expected = ((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).mean()
    assert quality["pooled_cosine_mean"] == pytest.approx(expected)
    assert quality["pooled_cosine_mean"] > quality["cosine_mean"]  # averaging cancels noise


def test_neighbour_agreement_of_embeddings() -> None:
    emb = np.random.default_rng(3).normal(size=(40, 32))
    same = neighbour_agreement(emb, emb)
    assert same == {"nn_top1_agreement": 1.0, "nn_overlap_at_5": 1.0, "pairwise_spearman": 1.0}
    noisy = neighbour_agreement(emb + np.random.default_rng(4).normal(size=emb.shape), emb)
    assert noisy["nn_top1_agreement"] < 1.0 and 0.0 < noisy["pairwise_spearman"] < 1.0
    assert neighbour_agreement(emb[:5], emb[:5]) == {}  # too few samples to rank
    quality = quality_metrics(emb, emb)
    assert quality["nn_overlap_at_5"] == 1.0
    logits = quality_metrics(emb[:, :10], emb[:, :10])  # class scores: no neighbours
    assert "nn_top1_agreement" not in logits and logits["top1_agreement"] == 1.0


def test_token_labels_give_token_accuracy_on_real_tokens() -> None:
    outputs, mask = tokens(dim=3)
    labels = outputs.argmax(axis=2)
    labels[~mask] = 2  # padding labels never count
    wrong = labels.copy()
    first = np.argwhere(mask)[0]
    wrong[tuple(first)] = (labels[tuple(first)] + 1) % 3
    quality = quality_metrics(outputs, outputs, wrong, mask)
    assert quality["token_accuracy"] == pytest.approx(1 - 1 / mask.sum())
    assert "nn_top1_agreement" not in quality  # scored against labels: not an embedding


def test_a_token_level_export_is_judged_on_real_tokens_in_a_job_evaluation(
    minilm_tokens_model, tmp_path
) -> None:
    """quantize.dynamic of a standard HF export, measured as a job measures it: on real
    tokens (the job's old figure counted padding, 0.977), pooled, and by neighbours."""
    parent = artifact_for(minilm_tokens_model.path)
    int8 = registry.get("quantize.dynamic").apply(
        parent, registry.parse_config("quantize.dynamic", {}), StepContext(tmp_path, parent)
    )
    held_out = sentence_sets(calibration=0, held_out=48)[1]
    settings = EvaluationSettings(iterations=2, warmup=0, measure_memory=False)
    parent_m, (variant_m,) = evaluate(parent, [int8.artifact], Dataset("held", held_out), settings)
    quality = variant_m["quality"]
    assert parent_m["quality"]["pooled_cosine_mean"] == 1.0
    assert quality["pooled_cosine_mean"] >= 0.99
    assert quality["pooled_cosine_mean"] > quality["cosine_mean"] > 0.98
    assert quality["nn_overlap_at_5"] > 0.8 and quality["pairwise_spearman"] > 0.95
