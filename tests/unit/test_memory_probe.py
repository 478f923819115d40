"""The per-model memory probe, run for real in child processes on a small ONNX model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pareto_core.errors import Internal
from pareto_core.tensors import Signature, TensorSpec
from runtimes.memory_probe import MEMORY_METHOD, ProbeResult, measure_model_memory, zero_inputs

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FIELDS = {
    "baseline_rss_bytes",
    "loaded_rss_bytes",
    "peak_rss_bytes",
    "model_memory_bytes",
    "method",
}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """x: FP32 [batch, 512] @ W: [512, 1024] (2 MiB of weights) -> y: FP32 [batch, 1024]."""
    weight = np.random.default_rng(0).standard_normal((512, 1024)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 512])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1024])],
        initializer=[numpy_helper.from_array(weight, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("probe") / "matmul.onnx"
    onnx.save(model, path)
    return path


def test_measure_model_memory_reports_growth(model_path: Path):
    result = measure_model_memory("onnxruntime_cpu", model_path, {"intra_op_threads": 1})
    assert isinstance(result, ProbeResult)
    assert set(result.to_json()) == FIELDS
    assert result.model_memory_bytes > 0
    assert result.model_memory_bytes == result.loaded_rss_bytes - result.baseline_rss_bytes
    assert result.peak_rss_bytes >= result.loaded_rss_bytes
    assert result.method == MEMORY_METHOD


def test_command_line_prints_one_json_line(model_path: Path):
    command = ["-m", "runtimes.memory_probe", "--runtime", "onnxruntime_cpu"]
    proc = subprocess.run(
        [sys.executable, *command, "--model", str(model_path)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert set(data) == FIELDS
    assert ProbeResult.from_json(data).model_memory_bytes > 0


def test_missing_model_raises_internal_with_child_stderr(tmp_path: Path):
    with pytest.raises(Internal, match=r"exit code 2.*missing\.onnx does not exist"):
        measure_model_memory("onnxruntime_cpu", tmp_path / "missing.onnx")


def test_unknown_runtime_raises_internal_naming_it(model_path: Path):
    with pytest.raises(Internal, match="unknown runtime 'no_such_runtime'"):
        measure_model_memory("no_such_runtime", model_path)


def test_bad_option_reaches_the_caller(model_path: Path):
    with pytest.raises(Internal, match="intra_op_threads"):
        measure_model_memory("onnxruntime_cpu", model_path, {"intra_op_threads": -2})


def test_zero_inputs_sets_dynamic_dims_to_one():
    signature = Signature(
        inputs=(TensorSpec("ids", "INT64", (-1, 7)), TensorSpec("flag", "BOOL", ())),
        outputs=(),
    )
    inputs = zero_inputs(signature)
    assert inputs["ids"].shape == (1, 7)
    assert inputs["ids"].dtype == np.int64
    assert not inputs["ids"].any()
    assert inputs["flag"].shape == ()
    assert inputs["flag"].dtype == np.bool_
