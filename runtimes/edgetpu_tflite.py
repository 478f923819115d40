"""EdgeTPU through full-integer int8 TFLite, with an honest CPU fallback.

Prepare (`build`, cached by runtimes/artifacts.py): the ONNX or .pt2 model is converted to
a full-integer int8 .tflite (int8 inputs and outputs too) by `tools/litert_convert.py`,
which runs in its own virtualenv (`.venv/litert`: litert-torch needs another pydantic) as a
subprocess, calibrated on a representative dataset (an .npz named like the inputs). When
`edgetpu_compiler` is on PATH the .tflite is also compiled for the TPU and its operator
mapping report ("Number of operations that will run on Edge TPU") is kept with it.

Load: `ai_edge_litert` runs the model. With `libedgetpu.so.1` loadable and a compiled
model, on the EdgeTPU delegate: device "edgetpu". Otherwise the same int8 model runs on
the CPU interpreter, and the device is "cpu-fallback" everywhere (describe, metrics
labels through the runtime name's description, ListRuntimes), never "edgetpu".
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from pareto_core.errors import FailedPrecondition, InvalidArgument
from pareto_core.formats import FORMAT_ONNX, FORMAT_TORCH_EXPORT
from runtimes.base import Capabilities, Runtime, RuntimeDescription
from runtimes.options import OptionContext, Options, Threads
from runtimes.tflite_session import TfliteSession

RUNTIME_NAME = "edgetpu_tflite"
ROOT = Path(__file__).resolve().parents[1]
CONVERTER = ROOT / "tools" / "litert_convert.py"
DELEGATE = "libedgetpu.so.1"
COMPILER = "edgetpu_compiler"
REPORT = "convert.json"


class EdgeTpuOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # An .npz whose arrays are named like the model's inputs (first axis = samples). The
    # gateway fills this from the `calibration_dataset` name of a stored dataset.
    calibration: Path | None = None
    calibration_dataset: str = ""
    calibration_samples: int = Field(200, ge=1, le=100_000)
    threads: Annotated[Threads, Field(ge=1)] = 1
    timeout_s: float = Field(900.0, gt=0, le=24 * 3600)


def litert_python() -> Path:
    """The LiteRT virtualenv's interpreter (PARETO_LITERT_PYTHON overrides)."""
    given = os.environ.get("PARETO_LITERT_PYTHON")
    return Path(given) if given else ROOT / ".venv" / "litert" / "bin" / "python"


def converter_version() -> str:
    """litert-torch's version, read from its dist-info (no import, no subprocess)."""
    site = litert_python().parent.parent / "lib"
    found = sorted(site.glob("python*/site-packages/litert_torch-*.dist-info"))
    return found[-1].name.removeprefix("litert_torch-").removesuffix(".dist-info") if found else ""


@lru_cache(maxsize=1)
def edgetpu_delegate_present() -> bool:
    """Whether libedgetpu loads and opens a delegate (an EdgeTPU is attached)."""
    import ctypes

    try:
        ctypes.CDLL(DELEGATE)
    except OSError:
        return False
    from ai_edge_litert.interpreter import load_delegate

    try:
        load_delegate(DELEGATE)
    except (ValueError, OSError):
        return False
    return True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class EdgeTpuTflite(Runtime):
    name = RUNTIME_NAME
    formats = frozenset({FORMAT_ONNX, FORMAT_TORCH_EXPORT})
    auto_select = False  # needs a calibration dataset: only when asked for
    options_model = EdgeTpuOptions
    # A filesystem path is never taken from a caller: the process resolves the name.
    server_options = {"calibration": "name a stored dataset with calibration_dataset instead"}
    needs_calibration = True

    def thread_options(self, threads: int) -> Options:
        return {"threads": threads}

    def complete_options(self, options: Options, context: OptionContext) -> Options:
        """`calibration_dataset` (a stored dataset's name; a job's own when it measures)
        resolved to the dataset's file as `calibration`."""
        completed = dict(options)
        if context.calibration_dataset:
            completed["calibration_dataset"] = context.calibration_dataset
        dataset = completed.get("calibration_dataset")
        if dataset:
            if context.find_dataset is None:
                raise FailedPrecondition("this server cannot resolve calibration datasets")
            completed["calibration"] = str(context.find_dataset(str(dataset)))
        return completed

    def capabilities(self) -> Capabilities:
        return Capabilities(
            tuple(sorted(self.formats)), ("FP32", "INT8", "INT32", "INT64"), ("edgetpu", "cpu")
        )

    def available(self) -> str | None:
        if importlib.util.find_spec("ai_edge_litert") is None:  # found, not imported
            return "the ai-edge-litert package is not installed; run make install"
        return None

    def device(self) -> str:
        return "edgetpu" if edgetpu_delegate_present() else "cpu-fallback"

    def build_key_parts(self, options: dict[str, Any] | None = None) -> dict[str, str]:
        opts = self.parse_options(options)
        calibration = opts.calibration
        return {
            "converter": f"litert-torch {converter_version()}",
            "compiler": (shutil.which(COMPILER) and _compiler_version()) or "none",
            "calibration_sha256": _sha256(calibration) if calibration else "",
            "calibration_samples": str(opts.calibration_samples),
        }

    def build(self, model_path: Path, out_dir: Path, options: dict[str, Any] | None) -> Path:
        opts = self.parse_options(options)
        if opts.calibration is None:
            raise InvalidArgument(
                f"{RUNTIME_NAME} needs a representative dataset to quantize the model to int8: "
                "set runtime option calibration_dataset (a dataset named like the inputs)"
            )
        python = litert_python()
        if not python.is_file():
            raise FailedPrecondition(
                f"{RUNTIME_NAME}: the LiteRT converter virtualenv is missing ({python}); "
                "run make install"
            )
        fmt = "onnx" if Path(model_path).suffix != ".pt2" and _is_onnx(model_path) else ""
        fmt = fmt or "torch_export"
        out = out_dir / "model.tflite"
        report = _run_converter(python, model_path, fmt, opts, out)
        if shutil.which(COMPILER):
            report["edgetpu_compiler"] = compile_for_edgetpu(out, out_dir)
        (out_dir / REPORT).write_text(json.dumps(report, indent=2))
        return out

    def load(self, model_path: Path, options: dict[str, Any] | None = None) -> TfliteSession:
        opts = self.parse_options(options)
        path = Path(model_path)
        report_file = path.parent / REPORT
        if not path.is_file() or not report_file.is_file():
            raise FailedPrecondition(f"{path} is not a prepared {RUNTIME_NAME} artifact")
        report = json.loads(report_file.read_text())
        compiled = path.with_name("model_edgetpu.tflite")
        if self.device() == "edgetpu" and compiled.is_file():
            from ai_edge_litert.interpreter import load_delegate

            delegates = [load_delegate(DELEGATE)]
            return TfliteSession(compiled, report, opts.threads, delegates, "edgetpu")
        return TfliteSession(path, report, opts.threads, [], "cpu-fallback")

    def describe(self) -> RuntimeDescription:
        from importlib.metadata import version

        device = self.device()
        return RuntimeDescription(
            name=RUNTIME_NAME,
            version=f"ai-edge-litert {version('ai-edge-litert')}",
            device=device,
            accelerated=device == "edgetpu",
            details={
                "delegate": DELEGATE if device == "edgetpu" else f"{DELEGATE} not loadable",
                "compiler": shutil.which(COMPILER) or f"{COMPILER} not on PATH",
                "converter": f"litert-torch {converter_version() or 'not installed'}",
            },
        )


def _is_onnx(path: Path) -> bool:
    """A .pt2 is a zip archive; anything else stored here is ONNX (protobuf)."""
    with open(path, "rb") as f:
        return f.read(2) != b"PK"


def _run_converter(
    python: Path, model: Path, fmt: str, opts: EdgeTpuOptions, out: Path
) -> dict[str, Any]:
    command = [str(python), str(CONVERTER), "--model", str(model), "--format", fmt]
    command += ["--calibration", str(opts.calibration), "--out", str(out)]
    command += ["--samples", str(opts.calibration_samples)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=opts.timeout_s, env=env, cwd=ROOT
        )
    except subprocess.TimeoutExpired:
        raise FailedPrecondition(
            f"{RUNTIME_NAME}: conversion took longer than {opts.timeout_s:.0f} s"
        ) from None
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    if done.returncode != 0 or "error" in result or not out.is_file():
        reason = result.get("error") or done.stderr.strip()[-2000:]
        raise FailedPrecondition(f"{RUNTIME_NAME} cannot convert this model to int8: {reason}")
    return result


def compile_for_edgetpu(tflite: Path, out_dir: Path) -> dict[str, Any]:
    """Run edgetpu_compiler; return its operator-mapping figures and the log file name."""
    done = subprocess.run(
        [COMPILER, "-s", "-o", str(out_dir), str(tflite)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    (out_dir / "edgetpu_compiler.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise FailedPrecondition(f"{COMPILER} failed: {done.stderr.strip()[-1000:]}")
    return parse_compiler_report(done.stdout)


def parse_compiler_report(text: str) -> dict[str, Any]:
    """The counts edgetpu_compiler prints, e.g. "Number of operations that will run on
    Edge TPU: 7" and "Number of operations that will run on CPU: 1"."""
    figures: dict[str, Any] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().startswith("Number of operations that will run on"):
            where = key.strip().removeprefix("Number of operations that will run on").strip()
            figures["ops_on_" + where.lower().replace(" ", "_")] = int(value.strip())
    return figures


def _compiler_version() -> str:
    done = subprocess.run([COMPILER, "--version"], capture_output=True, text=True, timeout=60)
    return done.stdout.strip() or "unknown"
