"""ONNX model files: load, save and check them as artifacts, their size and precision.

`onnx` is imported inside functions: technique modules import this file and the server
imports every technique module to validate recipes.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from compressors.base import Artifact
from pareto_core.errors import FailedPrecondition
from pareto_core.formats import FORMAT_ONNX

# Ops that only appear in a model that is already quantized.
QUANTIZED_OPS = frozenset(
    {
        "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger",
        "ConvInteger", "QLinearConv", "QLinearMatMul", "QGemm", "QAttention",
        "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulNBits", "QEmbedLayerNormalization",
        "GatherBlockQuantized",
    }
)  # fmt: skip
_FLOAT, _FLOAT16 = 1, 10  # onnx.TensorProto element types


def load_model(path: Path) -> Any:
    import onnx

    return onnx.load(str(path))


def save_model(model: Any, path: Path) -> Artifact:
    """Check `model`, write it to `path`, and return it as an ONNX Artifact."""
    import onnx

    from pareto_core.onnx_signature import onnx_signature

    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return Artifact(Path(path), FORMAT_ONNX, onnx_signature(model))


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
