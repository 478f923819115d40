"""edgetpu_tflite without converting: options, refusals, quantization arithmetic, the
edgetpu_compiler report, and the honest device (cpu-fallback without an EdgeTPU)."""

from __future__ import annotations

import numpy as np
import pytest

from pareto_core.errors import FailedPrecondition, InvalidArgument
from runtimes.edgetpu_tflite import EdgeTpuTflite, edgetpu_delegate_present, parse_compiler_report
from runtimes.tflite_session import dequantize, quantize

# As printed by edgetpu_compiler -s (Coral documentation, "Edge TPU Compiler").
COMPILER_OUTPUT = """Edge TPU Compiler version 16.0.384591198
Model compiled successfully in 41 ms.

Input model: model.tflite
Output model: model_edgetpu.tflite
On-chip memory used for caching model parameters: 24.50KiB
Number of Edge TPU subgraphs: 1
Total number of operations: 7
Operation log: model_edgetpu.log

Number of operations that will run on Edge TPU: 6
Number of operations that will run on CPU: 1
"""


def test_compiler_report_is_parsed():
    assert parse_compiler_report(COMPILER_OUTPUT) == {"ops_on_edge_tpu": 6, "ops_on_cpu": 1}


def test_quantize_round_trip_and_clipping():
    detail = {"dtype": np.int8, "quantization": (0.5, -10)}
    values = np.array([-100.0, -1.0, 0.0, 0.74, 100.0], np.float32)
    q = quantize(values, detail)
    assert q.dtype == np.int8 and q.tolist() == [-128, -12, -10, -9, 127]
    np.testing.assert_allclose(dequantize(q, detail), [-59.0, -1.0, 0.0, 0.5, 68.5])
    plain = {"dtype": np.float32, "quantization": (0.0, 0)}
    assert quantize(values, plain).dtype == np.float32


def test_build_needs_a_calibration_dataset(tmp_path):
    with pytest.raises(InvalidArgument, match="calibration_dataset"):
        EdgeTpuTflite().build(tmp_path / "m.onnx", tmp_path, {})


def test_missing_converter_venv_is_a_failed_precondition(tmp_path, monkeypatch):
    monkeypatch.setenv("PARETO_LITERT_PYTHON", str(tmp_path / "no" / "python"))
    (tmp_path / "c.npz").write_bytes(b"")
    with pytest.raises(FailedPrecondition, match="make install"):
        EdgeTpuTflite().build(tmp_path / "m.onnx", tmp_path, {"calibration": tmp_path / "c.npz"})


def test_options_are_checked_and_plain_files_refused(tmp_path):
    runtime = EdgeTpuTflite()
    with pytest.raises(InvalidArgument, match="unknown edgetpu_tflite option 'fast'"):
        runtime.load(tmp_path / "model.tflite", {"fast": True})
    with pytest.raises(FailedPrecondition, match="not a prepared edgetpu_tflite artifact"):
        runtime.load(tmp_path / "model.tflite", {})


@pytest.mark.skipif(edgetpu_delegate_present(), reason="an EdgeTPU is attached")
def test_without_an_edgetpu_the_device_is_cpu_fallback():
    described = EdgeTpuTflite().describe()
    assert described.device == "cpu-fallback" and not described.accelerated
    assert "not loadable" in described.details["delegate"]
