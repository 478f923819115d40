"""A Hugging Face folder exported to ONNX for its task, and the export checked against torch.

The exporter is torch.onnx's TorchScript path (`dynamo=False`, opset 17, through
`torch_bridge.torch_to_onnx`): it exports MiniLM and the BERT family here with named
inputs (`input_ids`, `attention_mask`), the task's named output and dynamic batch and
sequence axes, in a few seconds; the dynamo exporter bakes sizes that torch.export
specialised unless every dim is declared, and optimum-onnx is not installed (see README).
Every export is checked: the torch module and ONNX Runtime run the same sample batches
(sentences of different lengths, padded, and a single row of another length) and the
largest absolute difference of their outputs is kept with the model; past
`TOLERANCE` x the output's magnitude the export is refused.

`python -m compressors.training.hf_export FOLDER OUT.onnx [--task TASK]` does it in a
bounded helper process at upload (`service.catalog.hf_upload`) and prints one JSON line:
the figures, or {"error", "code"}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from compressors.base import Artifact
from compressors.training.hf_source import OUTPUT_NAMES, load_task_model
from pareto_core.errors import FailedPrecondition, ParetoError
from pareto_core.tensors import Signature, TensorSpec
from runtimes.hf.folder import (
    MAX_LARGE_JSON_BYTES,
    SENTENCE_EMBEDDING,
    SEQUENCE_CLASSIFICATION,
    TOKENIZER,
    Folder,
    check_folder,
    read_text,
)
from runtimes.hf.text import (
    ATTENTION_MASK,
    DEFAULT_MAX_TEXT_BYTES,
    INPUT_IDS,
    TOKEN_INPUTS,
    TextEncoder,
)

EXPORTER = "torch.onnx TorchScript exporter (dynamo=False), opset 17"
TOLERANCE = 1e-3  # of max(1, the largest output magnitude)
SAMPLE_SENTENCES = (
    "Compression keeps the answers and drops the weight.",
    "A short one.",
    "Every variant is measured beside its parent, on the runtime that will serve it.",
)
_RANDOM_LENGTHS = (12, 5)  # tokens per sample row without a tokenizer


def sample_batches(folder: Folder, vocab_size: int) -> list[dict[str, np.ndarray]]:
    """Two batches of token inputs: three rows padded to the longest, then one row alone
    (another batch size and length, so both dynamic axes are exercised). From the folder's
    tokenizer when it has one, else random token ids with the same padding."""
    if folder.text is not None:
        tokenizer = read_text(folder.root / TOKENIZER, TOKENIZER, MAX_LARGE_JSON_BYTES)
        encoder = TextEncoder(tokenizer, folder.text)
        return [
            encoder.encode(SAMPLE_SENTENCES, DEFAULT_MAX_TEXT_BYTES),
            encoder.encode(SAMPLE_SENTENCES[1:2], DEFAULT_MAX_TEXT_BYTES),
        ]
    rng = np.random.default_rng(0)
    ids = rng.integers(0, vocab_size, size=(3, _RANDOM_LENGTHS[0]), dtype=np.int64)
    mask = np.ones_like(ids)
    mask[1, _RANDOM_LENGTHS[1] :] = 0
    one = rng.integers(0, vocab_size, size=(1, _RANDOM_LENGTHS[1]), dtype=np.int64)
    return [
        {INPUT_IDS: ids, ATTENTION_MASK: mask},
        {INPUT_IDS: one, ATTENTION_MASK: np.ones_like(one)},
    ]


def _torch_run(module: Any, batch: dict[str, np.ndarray]) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = module(*(torch.from_numpy(batch[name]) for name in TOKEN_INPUTS))
    first = out[0] if isinstance(out, list | tuple) else out
    return np.asarray(first.detach().numpy())


def task_signature(task: str, output: np.ndarray) -> Signature:
    """Inputs [batch, seq] int64; the output with its batch (and sequence) axes dynamic."""
    dynamic = 1 if task in (SENTENCE_EMBEDDING, SEQUENCE_CLASSIFICATION) else 2
    shape = (-1,) * dynamic + tuple(int(d) for d in output.shape[dynamic:])
    inputs = tuple(TensorSpec(name, "INT64", (-1, -1)) for name in TOKEN_INPUTS)
    return Signature(inputs, (TensorSpec(OUTPUT_NAMES[task], "FP32", shape),))


def export_task_model(
    module: Any, task: str, batches: list[dict[str, np.ndarray]], out: Path
) -> Artifact:
    """`module` (a TaskModule) to ONNX at `out`, traced on the first sample batch."""
    import torch

    from compressors.training.torch_bridge import torch_to_onnx

    signature = task_signature(task, _torch_run(module, batches[0]))
    example = tuple(torch.from_numpy(batches[0][name]) for name in TOKEN_INPUTS)
    return torch_to_onnx(module, example, signature, out)


def check_export(module: Any, onnx_path: Path, batches: list[dict[str, np.ndarray]]) -> float:
    """The largest absolute difference between `module` and the ONNX model at `onnx_path`
    on `batches`; FailedPrecondition past TOLERANCE x the output's magnitude."""
    from runtimes.onnxruntime_cpu import OnnxRuntimeCpu

    session = OnnxRuntimeCpu().load(onnx_path, {"intra_op_threads": 1, "inter_op_threads": 1})
    diff, scale = 0.0, 1.0
    try:
        for batch in batches:
            want = _torch_run(module, batch)
            got = next(iter(session.run(dict(batch)).values()))
            if got.shape != want.shape:
                raise FailedPrecondition(
                    f"the ONNX export answers shape {list(got.shape)} where torch answers "
                    f"{list(want.shape)} on the sample inputs"
                )
            diff = max(diff, float(np.abs(got - want).max()))
            scale = max(scale, float(np.abs(want).max()))
    finally:
        session.close()
    if not diff <= TOLERANCE * scale:
        raise FailedPrecondition(
            f"the ONNX export differs from the torch model by {diff:.3g} on the sample inputs "
            f"(allowed: {TOLERANCE * scale:.3g}); it would not serve what the model computes"
        )
    return diff


def export_folder(root: Path, out: Path, task: str = "") -> dict[str, Any]:
    """Export the folder at `root` to `out` and check it; the figures for the record."""
    import resource

    started = time.perf_counter()
    module = load_task_model(root, task)
    folder = check_folder(root, module.task)
    batches = sample_batches(folder, int(getattr(module.model.config, "vocab_size", 2) or 2))
    artifact = export_task_model(module, folder.task, batches, out)
    diff = check_export(module, artifact.path, batches)
    return {
        "task": folder.task,
        "architecture": folder.architecture,
        "exporter": EXPORTER,
        "max_abs_diff": diff,
        "sample_rows": sum(len(b[INPUT_IDS]) for b in batches),
        "seconds": round(time.perf_counter() - started, 3),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compressors.training.hf_export")
    parser.add_argument("folder", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--task", default="")
    args = parser.parse_args(argv)
    try:
        result = export_folder(args.folder, args.out, args.task)
    except ParetoError as exc:
        print(json.dumps({"error": str(exc), "code": exc.code}), flush=True)
        return 2
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
