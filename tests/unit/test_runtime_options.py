"""Runtime options completed in one order (process defaults, the caller's, the runtime's
own), caller paths refused, and the prepare step of serving and of jobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from pareto_core.errors import FailedPrecondition, InvalidArgument
from pareto_core.tensors import Signature
from runtimes.options import OptionContext
from runtimes.registry import get_runtime
from service.serving.prepare import RuntimePreparer
from service.serving.servables import Servable
from service.serving.targets import Target

MODEL = Servable("digits", "1", "onnx", "ab" * 32, 10, Signature((), ()))
VARIANT = Servable("digits", "var-0123456789", "onnx", "cd" * 32, 10, Signature((), ()))


def _served(servable: Servable) -> OptionContext:
    return OptionContext(served_name=Target(servable).served_name)


def test_triton_model_name_defaults_to_the_served_name():
    runtime = get_runtime("triton_remote")
    assert runtime.resolve_options({}, {}, _served(MODEL))["model_name"] == "digits"
    assert runtime.resolve_options({}, {}, _served(VARIANT))["model_name"] == (
        "digits.var-0123456789"
    )
    given = runtime.resolve_options({}, {"model_name": "other"}, _served(MODEL))
    assert given["model_name"] == "other"


def test_server_defaults_sit_under_the_callers_options():
    defaults = {"url": "a:1", "retries": 5}
    options = get_runtime("triton_remote").resolve_options(defaults, {"url": "b:2"}, _served(MODEL))
    assert (options["url"], options["retries"]) == ("b:2", 5)


def test_calibration_dataset_is_resolved_and_paths_are_refused(tmp_path):
    runtime = get_runtime("edgetpu_tflite")
    given = {"calibration_dataset": "calib"}
    with pytest.raises(FailedPrecondition, match="cannot resolve calibration datasets"):
        runtime.resolve_options({}, given, OptionContext())
    context = OptionContext(find_dataset=lambda name: tmp_path / f"{name}.npz")
    options = runtime.resolve_options({}, given, context)
    assert options["calibration"] == str(tmp_path / "calib.npz")
    with pytest.raises(InvalidArgument, match="calibration_dataset instead"):
        runtime.resolve_options({}, {"calibration": "/etc/passwd"}, context)


def test_the_ort_settings_are_the_default_options_of_onnxruntime_cpu():
    from service.settings import Settings

    settings = Settings(ort_intra_op_threads=1, runtime_options={"triton_remote": {"url": "t:1"}})
    defaults = settings.runtime_defaults()
    assert defaults["onnxruntime_cpu"]["intra_op_threads"] == 1
    assert defaults["triton_remote"] == {"url": "t:1"}


def test_thread_options_are_the_runtimes_own():
    assert get_runtime("onnxruntime_cpu").thread_options(2) == {
        "intra_op_threads": 2,
        "inter_op_threads": 1,
    }
    assert get_runtime("edgetpu_tflite").thread_options(2) == {"threads": 2}
    assert get_runtime("triton_remote").thread_options(2) == {}


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
    preparer = RuntimePreparer(tmp_path / "data", defaults, None)
    prepare = preparer.for_job(("job-calib", calib), lambda a: "ef" * 32)
    path, options = prepare(Recording(), artifact, {"threads": 1})
    again, _ = prepare(Recording(), artifact, {"threads": 1})
    assert path == again and path.read_bytes() == b"tflite" and len(built) == 1  # cached
    assert (options["calibration_dataset"], options["calibration"]) == ("job-calib", str(calib))
    assert built[0]["calibration"] == str(calib)

    without = preparer.for_job(None, lambda a: "ef" * 32)
    with pytest.raises(FailedPrecondition, match=r"calibration dataset \(datasets.calibration\)"):
        without(Recording(), artifact, {})
