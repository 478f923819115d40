"""The runtime registry: lookup by name, by stored format, and lazy backend imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pareto_core.errors import FailedPrecondition, InvalidArgument
from runtimes.base import Runtime, RuntimeDescription, Session
from runtimes.onnxruntime_cpu import OnnxRuntimeCpu
from runtimes.registry import (
    BACKENDS,
    RuntimeRegistry,
    get_runtime,
    list_runtimes,
    runtime_for_format,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class EdgeTpuLike(Runtime):
    """Stands in for an accelerator runtime that cannot exist on this CI host."""

    name = "edgetpu_like"
    formats = frozenset({"onnx", "tflite"})

    def available(self) -> str | None:
        return "no EdgeTPU device found (/dev/apex_0 missing)"

    def load(self, model_path: Path, options: dict[str, Any] | None = None) -> Session:
        raise AssertionError("never loaded: unavailable")

    def describe(self) -> RuntimeDescription:
        return RuntimeDescription(self.name, "0", "edgetpu", True)


def test_get_runtime_by_name_returns_one_shared_instance():
    runtime = get_runtime("onnxruntime_cpu")
    assert isinstance(runtime, OnnxRuntimeCpu)
    assert get_runtime("onnxruntime_cpu") is runtime


def test_unknown_runtime_lists_known_names():
    with pytest.raises(InvalidArgument, match=r"'tensorflow'.*onnxruntime_cpu"):
        get_runtime("tensorflow")


def test_list_runtimes_covers_the_table():
    assert [rt.name for rt in list_runtimes()] == list(BACKENDS)


@pytest.mark.parametrize("fmt", ["onnx", "onnx_bundle"])
def test_onnx_formats_are_served_by_onnxruntime_cpu(fmt: str):
    assert runtime_for_format(fmt).name == "onnxruntime_cpu"


def test_format_without_runtime_says_which_and_what_exists():
    with pytest.raises(FailedPrecondition, match=r"'torch_export'.*onnxruntime_cpu"):
        runtime_for_format("torch_export")


def test_first_available_runtime_wins():
    registry = RuntimeRegistry({"edgetpu_like": EdgeTpuLike, "onnxruntime_cpu": OnnxRuntimeCpu})
    assert registry.for_format("onnx").name == "onnxruntime_cpu"


def test_unavailable_runtime_reports_what_is_missing():
    registry = RuntimeRegistry({"edgetpu_like": EdgeTpuLike, "onnxruntime_cpu": OnnxRuntimeCpu})
    with pytest.raises(FailedPrecondition, match=r"'tflite'.*edgetpu_like: no EdgeTPU device"):
        registry.for_format("tflite")


def test_unimportable_backend_is_a_failed_precondition():
    registry = RuntimeRegistry({"ghost": "runtimes.does_not_exist:Ghost"})
    with pytest.raises(FailedPrecondition, match=r"'ghost'.*runtimes.does_not_exist"):
        registry.get("ghost")


def test_backend_name_must_match_its_key():
    registry = RuntimeRegistry({"other_name": OnnxRuntimeCpu})
    with pytest.raises(TypeError, match="other_name"):
        registry.get("other_name")


def test_importing_registry_and_backend_modules_imports_no_backend_library():
    code = (
        "import sys, runtimes.registry, runtimes.onnxruntime_cpu, runtimes.memory_probe\n"
        "runtimes.registry.get_runtime('onnxruntime_cpu')\n"
        "heavy = [m for m in ('onnxruntime', 'onnx', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, check=True)
