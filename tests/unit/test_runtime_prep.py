"""The serving prepare step: options completed per runtime, caller paths refused, and the
artifact cache shared per data directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from pareto_core.errors import FailedPrecondition, InvalidArgument
from pareto_core.tensors import Signature
from runtimes.registry import get_runtime
from service.serving import prepare as runtime_prep
from service.serving.servables import Servable

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


def test_job_preparer_calibrates_on_the_jobs_own_dataset_through_the_cache(tmp_path: Path):
    from compressors.base import Artifact
    from runtimes.edgetpu_tflite import EdgeTpuTflite

    built: list[dict] = []

    class Recording(EdgeTpuTflite):  # the real name and key parts; a stand-in build
        def available(self) -> str | None:
            return None

        def build(self, model_path: Path, out_dir: Path, options: dict | None) -> Path:
            built.append(dict(options or {}))
            (out_dir / "model.tflite").write_bytes(b"tflite")
            return out_dir / "model.tflite"

    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx")
    calib = tmp_path / "calib.npz"
    calib.write_bytes(b"npz")
    artifact = Artifact(model, "onnx", Signature((), ()))
    defaults = {"edgetpu_tflite": {"calibration_dataset": "other", "calibration": "/etc/passwd"}}
    prepare = runtime_prep.job_preparer(
        tmp_path / "data", defaults, ("job-calib", calib), lambda a: "ef" * 32
    )
    path, options = prepare(Recording(), artifact, {"threads": 1})
    again, _ = prepare(Recording(), artifact, {"threads": 1})
    assert path == again and path.read_bytes() == b"tflite" and len(built) == 1  # cached
    assert (options["calibration_dataset"], options["calibration"]) == ("job-calib", str(calib))
    assert built[0]["calibration"] == str(calib)

    without = runtime_prep.job_preparer(tmp_path / "data", {}, None, lambda a: "ef" * 32)
    with pytest.raises(FailedPrecondition, match=r"calibration dataset \(datasets.calibration\)"):
        without(Recording(), artifact, {})
