"""TensorRT on an NVIDIA GPU: ONNX -> serialized engine (the prepare step) -> inference.

Build (cached by runtimes/artifacts.py under a key holding the TensorRT version, the GPU
model and compute capability, and the options, so a new TensorRT or another GPU rebuilds):
the ONNX parser fills the network; one optimization profile comes from the model's dynamic
axes and the user's min/opt/max shapes (`tensorrt_plan.derive_profile`); INT8 is enabled
for Q/DQ graphs (explicit quantization), FP16 on request; the workspace is limited; a
timing cache shared by the builds on this GPU speeds up later builds.

Inference: device buffers are allocated once, for the profile's largest shapes, and
reused by every call; each call runs on the session's CUDA stream (copy in, enqueue,
copy out, synchronize) under a lock, since one execution context runs one call at a time.
Requests outside the profile are INVALID_ARGUMENT naming the allowed range.
Needs the `tensorrt` and `cuda-python` packages and a CUDA device; without them the
runtime is unavailable and says which is missing (FAILED_PRECONDITION when asked for).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from pareto_core.errors import FailedPrecondition
from pareto_core.formats import FORMAT_ONNX, FORMAT_ONNX_BUNDLE
from runtimes.base import Capabilities, Runtime, RuntimeDescription, Session
from runtimes.tensorrt_io import check_cuda
from runtimes.tensorrt_plan import (
    Profile,
    TensorRtOptions,
    build_key_parts,
    derive_profile,
    has_qdq_nodes,
    precision_flags,
)

RUNTIME_NAME = "tensorrt_gpu"
ENGINE = "model.plan"
PLAN = "plan.json"


@lru_cache(maxsize=8)
def gpu_identity(device_id: int) -> tuple[str, str]:
    """(GPU model name, compute capability) of CUDA device `device_id`."""
    from cuda.bindings import runtime as cudart

    props = check_cuda(cudart.cudaGetDeviceProperties(device_id))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return name.strip("\x00 "), f"{props.major}.{props.minor}"


def missing_requirement() -> str | None:
    """What this host lacks for TensorRT, as a sentence; None when everything is there."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT Python package not installed (pip install tensorrt on a CUDA host)"
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        return "cuda-python package not installed (needed for device buffers and streams)"
    error, count = cudart.cudaGetDeviceCount()
    if error != cudart.cudaError_t.cudaSuccess or count == 0:
        return "no CUDA device"
    return None


def _logger() -> Any:
    import tensorrt as trt

    return trt.Logger(trt.Logger.WARNING)


class TensorRtGpu(Runtime):
    name = RUNTIME_NAME
    formats = frozenset({FORMAT_ONNX, FORMAT_ONNX_BUNDLE})
    auto_select = False  # only when asked for: never a silent switch of device
    options_model = TensorRtOptions

    def capabilities(self) -> Capabilities:
        return Capabilities(
            tuple(sorted(self.formats)),
            ("FP32", "FP16", "INT8", "INT32", "INT64", "BOOL", "UINT8"),
            ("cuda",),
        )

    def available(self) -> str | None:
        return missing_requirement()

    def build_key_parts(self, options: dict[str, Any] | None = None) -> dict[str, str]:
        import tensorrt as trt

        opts = self.parse_options(options)
        gpu, capability = gpu_identity(opts.device_id)
        return build_key_parts(opts, trt.__version__, gpu, capability)

    def build(self, model_path: Path, out_dir: Path, options: dict[str, Any] | None) -> Path:
        import onnx
        import tensorrt as trt

        from pareto_core.onnx_signature import onnx_signature
        from runtimes.onnxruntime_cpu import _model_file

        opts = self.parse_options(options)
        path = _model_file(Path(model_path))
        model = onnx.load(str(path), load_external_data=False)
        profile = derive_profile(onnx_signature(model), opts)
        logger = _logger()
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # explicit batch is the only mode in TRT 10
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(path)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise FailedPrecondition(f"TensorRT cannot parse {path.name}: {'; '.join(errors)}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_bytes)
        config.builder_optimization_level = opts.builder_optimization_level
        fast_fp16 = bool(getattr(builder, "platform_has_fast_fp16", True))
        flags = precision_flags(
            opts, has_qdq_nodes({n.op_type for n in model.graph.node}), fast_fp16
        )
        for flag in flags:
            config.set_flag(getattr(trt.BuilderFlag, flag))
        trt_profile = builder.create_optimization_profile()
        for name, (low, mid, high) in profile.ranges.items():
            trt_profile.set_shape(name, low, mid, high)
        config.add_optimization_profile(trt_profile)
        cache_file = self._timing_cache_file(out_dir, opts) if opts.timing_cache else None
        if cache_file is not None:
            blob = cache_file.read_bytes() if cache_file.is_file() else b""
            config.set_timing_cache(config.create_timing_cache(blob), ignore_mismatch=False)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise FailedPrecondition(f"TensorRT could not build an engine for {path.name}")
        if cache_file is not None:
            _write_atomic(cache_file, bytes(config.get_timing_cache().serialize()))
        (out_dir / ENGINE).write_bytes(bytes(serialized))
        plan = {"profile": json.loads(profile.to_json()), "flags": flags}
        (out_dir / PLAN).write_text(json.dumps(plan, indent=2))
        return out_dir / ENGINE

    def _timing_cache_file(self, out_dir: Path, opts: TensorRtOptions) -> Path:
        """One timing cache per (GPU, TensorRT) beside the artifacts (out_dir is
        <artifacts>/tmp/<build>)."""
        import tensorrt as trt

        gpu, capability = gpu_identity(opts.device_id)
        slug = "".join(c if c.isalnum() else "-" for c in f"{gpu}-sm{capability}-{trt.__version__}")
        folder = out_dir.parent.parent / "tensorrt-timing-cache"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{slug}.cache"

    def load(self, model_path: Path, options: dict[str, Any] | None = None) -> Session:
        missing = missing_requirement()
        if missing is not None:
            raise FailedPrecondition(f"runtime {RUNTIME_NAME!r} is not available: {missing}")
        from runtimes.tensorrt_io import TensorRtSession

        opts = self.parse_options(options)
        path = Path(model_path)
        if path.name != ENGINE or not (path.parent / PLAN).is_file():
            raise FailedPrecondition(f"{path} is not a prepared {RUNTIME_NAME} engine")
        plan = json.loads((path.parent / PLAN).read_text())
        ranges = {
            name: (tuple(low), tuple(opt), tuple(high))
            for name, (low, opt, high) in plan["profile"].items()
        }
        return TensorRtSession(path, Profile(ranges), opts.device_id, _logger())

    def describe(self) -> RuntimeDescription:
        missing = missing_requirement()
        if missing is not None:
            return RuntimeDescription(RUNTIME_NAME, "", "none", False, {"missing": missing})
        import tensorrt as trt

        gpu, capability = gpu_identity(0)
        return RuntimeDescription(
            RUNTIME_NAME,
            trt.__version__,
            f"cuda:0 ({gpu})",
            True,
            {"compute_capability": capability},
        )


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
