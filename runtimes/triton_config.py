"""A Triton Inference Server model repository for one stored ONNX model or variant.

Layout (Triton's documented model repository):

    <model>/config.pbtxt
    <model>/1/model.onnx          (+ the external-data files of an ONNX bundle)

The config is built as Triton's own `inference.ModelConfig` message (the schema shipped
by tritonclient as `model_config_pb2`) and written in protobuf text format, so it parses
with Triton's schema by construction; `check_repository` re-reads a written repository
and checks the rules Triton applies when loading it (names, version dirs, batching dims).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import text_format

from pareto_core.errors import FailedPrecondition, InvalidArgument
from pareto_core.tensors import Signature, TensorSpec

PLATFORM = "onnxruntime_onnx"
MODEL_FILE = "model.onnx"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_TRT_PRECISIONS = ("FP32", "FP16")


@dataclass(frozen=True)
class ExportSettings:
    max_batch_size: int = 8  # 0 = no batching by Triton (the batch dim is a normal dim)
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 100
    instance_count: int = 1
    kind: str = "cpu"  # "cpu" or "gpu"
    tensorrt: bool = True  # on GPU: the TensorRT execution accelerator of the ONNX backend
    tensorrt_precision: str = "FP16"
    tensorrt_workspace_bytes: int = 1 << 30

    def check(self) -> None:
        if self.kind not in ("cpu", "gpu"):
            raise InvalidArgument(f"kind must be 'cpu' or 'gpu', got {self.kind!r}")
        if self.max_batch_size < 0 or self.instance_count < 1 or self.max_queue_delay_us < 0:
            raise InvalidArgument(
                "max_batch_size must be >= 0, instance_count >= 1, max_queue_delay_us >= 0"
            )
        bad = [b for b in self.preferred_batch_sizes if not 1 <= b <= self.max_batch_size]
        if bad:
            raise InvalidArgument(
                f"preferred batch sizes {bad} are outside 1..max_batch_size ({self.max_batch_size})"
            )
        if self.tensorrt_precision not in _TRT_PRECISIONS:
            raise InvalidArgument(
                f"tensorrt_precision must be one of {_TRT_PRECISIONS}, "
                f"got {self.tensorrt_precision!r}"
            )


def _dtype(datatype: str) -> str:
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def batchable(signature: Signature) -> bool:
    """Triton batching needs every input and output to start with a dynamic batch dim."""
    return all(t.shape and t.shape[0] == -1 for t in (*signature.inputs, *signature.outputs))


def build_config(name: str, signature: Signature, settings: ExportSettings) -> Any:
    """The `inference.ModelConfig` message for serving `signature` as model `name`."""
    from tritonclient.grpc import model_config_pb2 as mc

    settings.check()
    if not _NAME.match(name):
        raise InvalidArgument(f"Triton model name {name!r} must match {_NAME.pattern}")
    batch = settings.max_batch_size if batchable(signature) else 0
    config = mc.ModelConfig(name=name, platform=PLATFORM, max_batch_size=batch)

    def dims(t: TensorSpec) -> list[int]:
        return list(t.shape[1:] if batch else t.shape)

    for specs, fields in ((signature.inputs, config.input), (signature.outputs, config.output)):
        for t in specs:
            tensor = fields.add(name=t.name, data_type=_dtype(t.datatype), dims=dims(t) or [1])
            if not dims(t):  # a [batch] tensor: Triton wants dims [1] reshaped to []
                tensor.reshape.SetInParent()
    if batch:
        config.dynamic_batching.preferred_batch_size.extend(settings.preferred_batch_sizes)
        config.dynamic_batching.max_queue_delay_microseconds = settings.max_queue_delay_us
    kind = (
        mc.ModelInstanceGroup.KIND_GPU if settings.kind == "gpu" else mc.ModelInstanceGroup.KIND_CPU
    )
    config.instance_group.add(count=settings.instance_count, kind=kind)
    if settings.kind == "gpu" and settings.tensorrt:
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(
            name="tensorrt"
        )
        accelerator.parameters["precision_mode"] = settings.tensorrt_precision
        accelerator.parameters["max_workspace_size_bytes"] = str(settings.tensorrt_workspace_bytes)
    return config


def config_text(config: Any) -> str:
    text: str = text_format.MessageToString(config)
    return text


def check_repository(model_dir: Path) -> list[str]:
    """Problems Triton would report loading `model_dir` (empty when it is valid)."""
    from tritonclient.grpc import model_config_pb2 as mc

    problems: list[str] = []
    config_file = model_dir / "config.pbtxt"
    if not config_file.is_file():
        return [f"{config_file} is missing"]
    try:
        config = text_format.Parse(config_file.read_text(), mc.ModelConfig())
    except text_format.ParseError as exc:
        return [f"config.pbtxt does not parse as inference.ModelConfig: {exc}"]
    if config.name != model_dir.name:
        problems.append(f"config name {config.name!r} != directory name {model_dir.name!r}")
    versions = [p for p in model_dir.iterdir() if p.is_dir()]
    if not versions or not all(p.name.isdigit() and int(p.name) > 0 for p in versions):
        problems.append(f"version directories must be positive integers, got {versions}")
    for version in versions:
        if not (version / (config.default_model_filename or MODEL_FILE)).is_file():
            problems.append(f"{version} has no {config.default_model_filename or MODEL_FILE}")
    if not config.platform and not config.backend:
        problems.append("neither platform nor backend is set")
    for tensor in (*config.input, *config.output):
        if not tensor.dims or any(d == 0 or d < -1 for d in tensor.dims):
            problems.append(f"tensor {tensor.name!r} has invalid dims {list(tensor.dims)}")
        if tensor.data_type == mc.TYPE_INVALID:
            problems.append(f"tensor {tensor.name!r} has no data_type")
    if config.HasField("dynamic_batching") and config.max_batch_size == 0:
        problems.append("dynamic_batching needs max_batch_size > 0")
    return problems


def ensure_onnx(fmt: str) -> None:
    if fmt not in ("onnx", "onnx_bundle"):
        raise FailedPrecondition(
            f"only ONNX models and variants can be exported to a Triton repository here "
            f"(onnxruntime backend); this one is {fmt!r}"
        )
