"""A model exported from a Hugging Face folder keeps its source (migration 7) on both
metadata backends: the record round-trips, garbage collection keeps the source's blob,
and a database at version 6 (main's serving_configs) migrates with its models intact."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from pareto_core.tensors import Signature, TensorSpec
from service.store.records import ModelRecord, ModelSource
from service.store.sqlite_repository import SqliteRepository
from service.store.sqlite_schema import MIGRATIONS
from tests.helpers.store_backends import BACKENDS, store_backend

SIGNATURE = Signature(
    (TensorSpec("input_ids", "INT64", (-1, -1)), TensorSpec("attention_mask", "INT64", (-1, -1))),
    (TensorSpec("sentence_embedding", "FP32", (-1, 384)),),
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


SOURCE = ModelSource(
    format="hf_folder",
    sha256=sha("folder"),
    size_bytes=123,
    task="sentence-embedding",
    architecture="BertModel",
    export={"exporter": "torchscript", "max_abs_diff": 1.5e-7},
    text={"max_tokens": 256, "pad_id": 0, "pad_token": "[PAD]", "lowercase": False},
)


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path):
    yield from store_backend(request, tmp_path)


def test_a_model_keeps_its_source(backend) -> None:
    repo = backend.open()
    repo.add_model(ModelRecord("m", 0, "onnx", sha("onnx"), 10, SIGNATURE, source=SOURCE), False)
    repo.add_model(ModelRecord("plain", 0, "onnx", sha("plain"), 10, SIGNATURE), False)
    got = backend.open().get_model("m")
    assert got.source == SOURCE
    assert got.blobs == (sha("onnx"), sha("folder"))
    assert got.served_signature.text is not None
    assert got.served_signature.served_inputs[0].name == "text"
    assert backend.open().get_model("plain").source is None
    assert {sha("onnx"), sha("folder"), sha("plain")} <= repo.referenced_blobs()


def test_a_version_6_database_migrates_with_its_models(tmp_path) -> None:
    path = tmp_path / "meta.db"
    with sqlite3.connect(path) as c:
        for statement in (s for step in MIGRATIONS[:6] for s in step):
            c.execute(statement)
        c.execute(
            "INSERT INTO models (name, version, format, sha256, size_bytes, description, "
            "labels, inputs, outputs, created_at) VALUES ('old', 1, 'onnx', ?, 1, '', '{}', "
            "'[]', '[]', '2026-01-01T00:00:00+00:00')",
            (sha("old"),),
        )
        c.execute("PRAGMA user_version=6")
    repo = SqliteRepository(path)  # applies migration 7
    assert repo.get_model("old").source is None
    repo.add_model(ModelRecord("new", 0, "onnx", sha("new"), 1, SIGNATURE, source=SOURCE), False)
    assert repo.get_model("new").source == SOURCE
    repo.close()
