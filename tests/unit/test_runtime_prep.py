"""The serving prepare step: options completed per runtime, caller paths refused, and the
artifact cache shared per data directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtimes.base import Signature
from runtimes.registry import get_runtime
from service import runtime_prep
from service.errors import FailedPrecondition, InvalidArgument
from service.servables import Servable

MODEL = Servable("digits", "1", "onnx", "ab" * 32, 10, Signature((), ()))
VARIANT = Servable("digits", "var-0123456789", "onnx", "cd" * 32, 10, Signature((), ()))


@pytest.fixture(autouse=True)
def reset_config():
    yield
    runtime_prep.configure({}, None)


def test_triton_model_name_defaults_to_the_served_name():
    runtime = get_runtime("triton_remote")
    assert runtime_prep.complete_options(runtime, MODEL, {})["model_name"] == "digits"
    assert runtime_prep.complete_options(runtime, VARIANT, {})["model_name"] == (
        "digits.var-0123456789"
    )
    given = runtime_prep.complete_options(runtime, MODEL, {"model_name": "other"})
    assert given["model_name"] == "other"


def test_server_defaults_sit_under_the_callers_options():
    runtime_prep.configure({"triton_remote": {"url": "a:1", "retries": 5}}, None)
    options = runtime_prep.complete_options(get_runtime("triton_remote"), MODEL, {"url": "b:2"})
    assert (options["url"], options["retries"]) == ("b:2", 5)


def test_calibration_dataset_is_resolved_and_paths_are_refused(tmp_path):
    runtime = get_runtime("edgetpu_tflite")
    with pytest.raises(FailedPrecondition, match="cannot resolve calibration datasets"):
        runtime_prep.complete_options(runtime, MODEL, {"calibration_dataset": "calib"})
    runtime_prep.configure({}, lambda name: tmp_path / f"{name}.npz")
    options = runtime_prep.complete_options(runtime, MODEL, {"calibration_dataset": "calib"})
    assert options["calibration"] == str(tmp_path / "calib.npz")
    with pytest.raises(InvalidArgument, match="calibration_dataset instead"):
        runtime_prep.complete_options(runtime, MODEL, {"calibration": "/etc/passwd"})


def test_one_cache_per_data_directory(tmp_path: Path):
    first = runtime_prep.artifact_cache(tmp_path / "a")
    assert runtime_prep.artifact_cache(tmp_path / "a") is first
    assert runtime_prep.artifact_cache(tmp_path / "b") is not first
