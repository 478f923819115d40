"""ONNX helpers shared by the techniques that hand a model file to ONNX Runtime's tooling.

* files: `artifact_for` (check a written model and wrap it as an Artifact), `size_bytes`,
  `op_histogram`, `precision_of` (is this model already int8 or float16?);
* running: `feeds_for` (dataset arrays matched to a model's inputs), `outputs_of` (run a
  model with ONNX Runtime batch-wise) and `score` (the quality map of `compressors.quality`,
  the same figures the job's evaluation reports);
* transformers: `looks_like_transformer`, `attention_shape` and `optimize_transformer`
  (ONNX Runtime's transformer optimizer, `onnxruntime.transformers.optimizer`).

`onnx` and `onnxruntime` are imported inside functions: technique modules import this file
and the server imports every technique module to validate recipes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from compressors.base import Artifact
from pareto_core.errors import FailedPrecondition
from pareto_core.formats import FORMAT_ONNX
from pareto_core.tensors import Signature

# Ops that only appear in a model that is already quantized.
QUANTIZED_OPS = frozenset(
    {
        "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger",
        "ConvInteger", "QLinearConv", "QLinearMatMul", "QGemm", "QAttention",
        "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulNBits", "QEmbedLayerNormalization",
    }
)  # fmt: skip
_FLOAT, _FLOAT16 = 1, 10  # onnx.TensorProto element types


def load(path: Path) -> Any:
    import onnx

    return onnx.load(str(path))


def artifact_for(path: Path) -> Artifact:
    """Check the model written at `path` (by path, so large files work) and wrap it."""
    import onnx

    from pareto_core.onnx_signature import onnx_signature

    onnx.checker.check_model(str(path))
    model = onnx.load(str(path), load_external_data=False)
    return Artifact(Path(path), FORMAT_ONNX, onnx_signature(model))


def size_bytes(path: Path) -> int:
    return Path(path).stat().st_size


def size_report(before: Path, after: Path) -> dict[str, float]:
    b, a = size_bytes(before), size_bytes(after)
    return {"size_bytes_before": b, "size_bytes_after": a, "size_ratio": round(a / b, 4)}


def op_histogram(model: Any) -> dict[str, int]:
    return dict(sorted(Counter(node.op_type for node in model.graph.node).items()))


def precision_of(model: Any) -> str:
    """The model's precision: int8 when the graph holds quantization ops, fp16 when most of
    its float weights are float16, else fp32."""
    if any(node.op_type in QUANTIZED_OPS for node in model.graph.node):
        return "int8"
    types = Counter(init.data_type for init in model.graph.initializer)
    return "fp16" if types[_FLOAT16] > types[_FLOAT] else "fp32"


def require_fp32(model: Any, technique: str) -> None:
    """FailedPrecondition unless `model` is a float32 model (quantizing twice is refused)."""
    precision = precision_of(model)
    if precision != "fp32":
        raise FailedPrecondition(
            f"{technique} takes a float32 model, but this one is already {precision} "
            f"(put {technique} before the step that produced it, or leave it out)"
        )


# --------------------------------------------------------------------------- running


def feeds_for(
    signature: Signature, inputs: dict[str, np.ndarray], limit: int, what: str
) -> dict[str, np.ndarray]:
    """The first `limit` samples of `inputs` for each model input, by name (or by position
    when no name matches and the counts agree), cast to the input's dtype."""
    arrays = list(inputs.values())
    feeds = {}
    for k, spec in enumerate(signature.inputs):
        array = inputs.get(spec.name)
        if array is None and len(arrays) == len(signature.inputs):
            array = arrays[k]
        if array is None:
            raise FailedPrecondition(
                f"model input {spec.name!r} is not in the {what} dataset, which has {list(inputs)}"
            )
        feeds[spec.name] = np.ascontiguousarray(array[:limit], dtype=spec.numpy_dtype)
    return feeds


def batches(feeds: dict[str, np.ndarray], batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    total = len(next(iter(feeds.values())))
    for start in range(0, total, batch_size):
        yield {name: array[start : start + batch_size] for name, array in feeds.items()}


def outputs_of(
    path: Path, feeds: dict[str, np.ndarray], output: str, threads: int, batch_size: int
) -> np.ndarray:
    """Output `output` of the model at `path` on `feeds`, run `batch_size` samples at a time
    with ONNX Runtime (CPU, `threads` intra-op threads)."""
    from runtimes.onnxruntime_cpu import OnnxRuntimeCpu

    session = OnnxRuntimeCpu().load(
        Path(path), {"intra_op_threads": threads, "inter_op_threads": 1}
    )
    try:
        parts = [session.run(chunk, [output])[output] for chunk in batches(feeds, batch_size)]
    finally:
        session.close()
    return np.concatenate(parts)


def score(
    outputs: np.ndarray, reference: np.ndarray, labels: np.ndarray | None
) -> dict[str, float]:
    """accuracy/loss (with labels), cosine_mean/min, top1_agreement, max_abs_error."""
    from compressors.quality import quality_metrics

    return quality_metrics(outputs, reference, labels)


# --------------------------------------------------------------------------- transformers

# Element-wise ops that may sit between the scores MatMul (Q @ K^T) and its Softmax.
_SCORE_PATH_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Where", "Cast"})
_MAX_HOPS = 4


def _producers(graph: Any) -> dict[str, Any]:
    return {out: node for node in graph.node for out in node.output}


def _constants(graph: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _score_path(graph: Any, softmax: Any, producers: dict, constants: dict) -> tuple[Any, list]:
    """Walk back from a Softmax over element-wise ops: (the MatMul reached or None, the
    scalar scales met on the way as (op_type, value))."""
    scales: list[tuple[str, float]] = []
    node = producers.get(softmax.input[0])
    for _ in range(_MAX_HOPS):
        if node is None or node.op_type not in _SCORE_PATH_OPS:
            break
        for name in node.input[1:]:
            value = constants.get(name)
            if node.op_type in ("Mul", "Div") and value is not None and value.size == 1:
                scales.append((node.op_type, float(value.reshape(-1)[0])))
        node = producers.get(node.input[0])
    is_scores = node is not None and node.op_type == "MatMul"
    is_scores = is_scores and not any(name in constants for name in node.input)
    return (node if is_scores else None), scales


def looks_like_transformer(model: Any) -> bool:
    """A Softmax fed by a MatMul of two activations (Q @ K^T): self-attention."""
    graph = model.graph
    producers, constants = _producers(graph), _constants(graph)
    softmaxes = [n for n in graph.node if n.op_type == "Softmax"]
    return any(_score_path(graph, s, producers, constants)[0] for s in softmaxes)


def _hidden_size(graph: Any, constants: dict[str, np.ndarray]) -> int:
    """The most common d of square [d, d] MatMul weights (the Q, K, V, output projections)."""
    sizes = Counter(
        constants[n.input[1]].shape[0]
        for n in graph.node
        if n.op_type == "MatMul" and n.input[1] in constants
        and constants[n.input[1]].ndim == 2
        and constants[n.input[1]].shape[0] == constants[n.input[1]].shape[1]
    )  # fmt: skip
    return sizes.most_common(1)[0][0] if sizes else 0


def _head_size(op: str, scale: float) -> float:
    """The head size d that a scores scale implies: x / sqrt(d), or x * (1 / sqrt(d))."""
    return scale**2 if op == "Div" else 1.0 / scale**2


def attention_shape(model: Any) -> tuple[int, int] | None:
    """(num_heads, hidden_size) read from the graph, or None.

    The head size comes from the scale of the attention scores, the hidden size from the
    square projection weights. ONNX Runtime's own detection reads a constant
    [0, 0, heads, head_size] Reshape, which recent exporters no longer emit.
    """
    graph = model.graph
    producers, constants = _producers(graph), _constants(graph)
    hidden = _hidden_size(graph, constants)
    for softmax in (n for n in graph.node if n.op_type == "Softmax"):
        matmul, scales = _score_path(graph, softmax, producers, constants)
        for op, scale in scales if matmul is not None and hidden else []:
            exact = _head_size(op, scale) if scale > 0 else 0.0
            head = round(exact)
            if head > 0 and abs(exact - head) < 0.01 * head and hidden % head == 0:
                return hidden // head, hidden
    return None


def optimize_transformer(
    src: Path, dst: Path, num_heads: int = 0, hidden_size: int = 0
) -> dict[str, Any]:
    """Run ONNX Runtime's transformer optimizer (model_type "bert", Python fusions only: the
    session applies its own graph optimizations at load) on `src` and write `dst`.

    num_heads/hidden_size 0 = read them from the graph (`attention_shape`), else let the
    optimizer try. Returns {"fused": {op: count}, "num_heads", "hidden_size"}.
    """
    from onnxruntime.transformers import optimizer

    if not num_heads:
        num_heads, hidden_size = attention_shape(load(src)) or (0, 0)
    try:
        optimized = optimizer.optimize_model(
            str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=0
        )
    except Exception as exc:  # the fusers assert on graphs they misread
        raise FailedPrecondition(f"ONNX Runtime's transformer optimizer failed: {exc!r}") from None
    fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
    optimized.save_model_to_file(str(dst))
    return {"fused": fused, "num_heads": num_heads, "hidden_size": hidden_size}
