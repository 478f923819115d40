"""Text data and checks shared by the transformer quantization tests: tokenized English
sentences (calibration and held-out sets never overlap), running a model with ONNX Runtime,
and the fidelity of its sentence embeddings to the parent's."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from compressors.measure.tokens import mean_pool

SEQ_LEN = 32


def sentence_sets(calibration: int = 32, held_out: int = 32) -> tuple[dict, dict]:
    """(calibration feeds, held-out feeds): input_ids and attention_mask [n, 32]."""
    from examples.models import tokenize
    from examples.text import english_sentences

    sentences = english_sentences(calibration + held_out, seed=11)
    return tokenize(sentences[:calibration], SEQ_LEN), tokenize(sentences[calibration:], SEQ_LEN)


def run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def embedding_cosine(path: Path, parent: Path, feeds: dict[str, np.ndarray]) -> float:
    """Mean cosine of the sentence embeddings (mask-pooled when the output is per token)."""
    out, ref = run(path, feeds), run(parent, feeds)
    if out.ndim == 3:
        mask = feeds["attention_mask"].astype(bool)
        out, ref = mean_pool(out, mask), mean_pool(ref, mask)
    cos = (out * ref).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(ref, axis=1)
    return float(cos.mean())


def ops(path: Path) -> Counter[str]:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)
