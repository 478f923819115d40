"""Triton model configs, checked against Triton's own schema (tritonclient's
model_config_pb2: inference.ModelConfig) and the repository rules Triton applies."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from pareto_core.errors import FailedPrecondition, InvalidArgument
from pareto_core.tensors import Signature, TensorSpec
from runtimes.triton_config import (
    ExportSettings,
    build_config,
    check_repository,
    config_text,
    ensure_onnx,
)

DIGITS = Signature(
    (TensorSpec("pixels", "FP32", (-1, 1, 8, 8)),), (TensorSpec("logits", "FP32", (-1, 10)),)
)
FIXED = Signature((TensorSpec("x", "INT64", (2, 3)),), (TensorSpec("y", "FP16", (2,)),))


def _parse(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def test_batchable_model_on_cpu():
    settings = ExportSettings(max_batch_size=16, preferred_batch_sizes=(4, 8), instance_count=2)
    config = _parse(config_text(build_config("digits", DIGITS, settings)))
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 16
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
        ("pixels", mc.TYPE_FP32, [1, 8, 8])
    ]
    assert list(config.output[0].dims) == [10]
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    group = config.instance_group[0]
    assert (group.count, group.kind) == (2, mc.ModelInstanceGroup.KIND_CPU)
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator


def test_gpu_gets_the_tensorrt_accelerator():
    config = _parse(config_text(build_config("digits", DIGITS, ExportSettings(kind="gpu"))))
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    assert accelerator.parameters["precision_mode"] == "FP16"
    assert int(accelerator.parameters["max_workspace_size_bytes"]) == 1 << 30
    plain = build_config("digits", DIGITS, ExportSettings(kind="gpu", tensorrt=False))
    assert not plain.optimization.execution_accelerators.gpu_execution_accelerator


def test_fixed_batch_dim_means_no_triton_batching():
    config = build_config("fixed", FIXED, ExportSettings(max_batch_size=8))
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [2, 3] and config.input[0].data_type == mc.TYPE_INT64


def test_batch_only_tensor_is_reshaped():
    signature = Signature((TensorSpec("x", "FP32", (-1, 4)),), (TensorSpec("y", "FP32", (-1,)),))
    output = build_config("m", signature, ExportSettings()).output[0]
    assert list(output.dims) == [1] and output.HasField("reshape") and not output.reshape.shape


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (ExportSettings(kind="tpu"), "kind"),
        (ExportSettings(instance_count=0), "instance_count"),
        (ExportSettings(max_batch_size=4, preferred_batch_sizes=(8,)), r"\[8\]"),
        (ExportSettings(tensorrt_precision="INT4"), "tensorrt_precision"),
    ],
)
def test_bad_settings_are_named(settings, message):
    with pytest.raises(InvalidArgument, match=message):
        build_config("digits", DIGITS, settings)


def test_bad_model_name_and_format():
    with pytest.raises(InvalidArgument, match="Triton model name"):
        build_config("a/b", DIGITS, ExportSettings())
    with pytest.raises(FailedPrecondition, match="torch_export"):
        ensure_onnx("torch_export")


def _write(root: Path, name: str, text: str, version: str = "1") -> Path:
    model_dir = root / name
    (model_dir / version).mkdir(parents=True)
    (model_dir / version / "model.onnx").write_bytes(b"onnx")
    (model_dir / "config.pbtxt").write_text(text)
    return model_dir


def test_check_repository_accepts_what_we_write(tmp_path):
    text = config_text(build_config("digits", DIGITS, ExportSettings(kind="gpu")))
    assert check_repository(_write(tmp_path, "digits", text)) == []


@pytest.mark.parametrize(
    ("name", "text", "version", "problem"),
    [
        ("digits", "name: 'other' platform: 'onnxruntime_onnx'", "1", "directory name"),
        ("digits", "name: 'digits' platform: 'onnxruntime_onnx'", "v1", "positive integers"),
        ("digits", "name: 'digits' bogus_field: 1", "1", "does not parse"),
        ("digits", "name: 'digits'", "1", "neither platform nor backend"),
        (
            "digits",
            "name: 'digits' platform: 'onnxruntime_onnx' input { name: 'x' dims: [0] }",
            "1",
            "invalid dims",
        ),
        (
            "digits",
            "name: 'digits' platform: 'onnxruntime_onnx' dynamic_batching { }",
            "1",
            "max_batch_size > 0",
        ),
    ],
)
def test_check_repository_finds_problems(tmp_path, name, text, version, problem):
    problems = check_repository(_write(tmp_path, name, text, version))
    assert any(problem in p for p in problems), problems
