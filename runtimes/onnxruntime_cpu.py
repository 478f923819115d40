"""ONNX Runtime on the CPU (CPUExecutionProvider only).

Memory: after every run, arena memory the run no longer holds goes back to the operating
system (arena shrinkage), so one large request does not leave the process at its peak.
With `set_memory_limit`, every session of the process takes the tensors it computes from
one shared arena of that size: a request that would need more fails alone, with
RESOURCE_EXHAUSTED, instead of growing the process (weights are not counted).

`onnxruntime` is imported inside functions so that importing this module (which the
registry does to read `formats`) stays cheap.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from pareto_core.errors import FailedPrecondition, Internal, InvalidArgument, ResourceExhausted
from pareto_core.formats import FORMAT_ONNX, FORMAT_ONNX_BUNDLE
from pareto_core.tensors import Signature, TensorSpec
from runtimes.base import Runtime, RuntimeDescription, Session
from runtimes.options import Options, Threads, parse_options

if TYPE_CHECKING:
    import onnxruntime

log = logging.getLogger(__name__)

RUNTIME_NAME = "onnxruntime_cpu"
PROVIDERS = ("CPUExecutionProvider",)
_ARENA_EXTEND_AS_REQUESTED = 1  # OrtArenaCfg arena_extend_strategy kSameAsRequested
_shared_arena_bytes = 0  # set_memory_limit: the arena every session shares (0: none)
_shared_arena_lock = threading.Lock()

# ORT NodeArg.type -> KServe datatype. Anything else (string, bfloat16, seq, map) is refused.
ORT_TO_KSERVE: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
}


class OrtOptions(BaseModel):
    """Per-deployment session options. 0 threads means "let ONNX Runtime decide"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    intra_op_threads: Threads = 0
    inter_op_threads: Threads = 0
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    execution_mode: Literal["sequential", "parallel"] = "sequential"


def session_options_from(
    options: dict[str, Any] | OrtOptions | None,
) -> onnxruntime.SessionOptions:
    """The exact SessionOptions `OnnxRuntimeCpu.load` uses (for identical direct sessions)."""
    import onnxruntime as ort

    opts = parse_options(RUNTIME_NAME, OrtOptions, options)
    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    modes = {
        "sequential": ort.ExecutionMode.ORT_SEQUENTIAL,
        "parallel": ort.ExecutionMode.ORT_PARALLEL,
    }
    so = ort.SessionOptions()
    so.intra_op_num_threads = opts.intra_op_threads
    so.inter_op_num_threads = opts.inter_op_threads
    so.graph_optimization_level = levels[opts.graph_optimization_level]
    so.execution_mode = modes[opts.execution_mode]
    so.log_severity_level = 3  # errors only: failures surface as exceptions anyway
    if _shared_arena_bytes:
        so.add_session_config_entry("session.use_env_allocators", "1")
    return so


def set_memory_limit(max_bytes: int) -> None:
    """Make every session created afterwards in this process compute in one shared arena
    of `max_bytes`. Once per process: ONNX Runtime cannot replace a registered arena, so a
    later call keeps the first size (and says so)."""
    global _shared_arena_bytes
    import onnxruntime as ort

    with _shared_arena_lock:
        if _shared_arena_bytes:
            if _shared_arena_bytes != max_bytes:
                log.warning(
                    "%s memory limit stays %d bytes (asked for %d): it is set once per process",
                    RUNTIME_NAME,
                    _shared_arena_bytes,
                    max_bytes,
                )
            return
        config = ort.OrtArenaCfg(max_bytes, _ARENA_EXTEND_AS_REQUESTED, -1, -1)
        allocator, memory = ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, ort.OrtMemType.DEFAULT
        cpu = ort.OrtMemoryInfo("Cpu", allocator, 0, memory)
        ort.create_and_register_allocator(cpu, config)
        # Failures reach callers as exceptions; ORT's own log would repeat each of them.
        ort.set_default_logger_severity(4)
        _shared_arena_bytes = max_bytes


def _run_options() -> Any:
    import onnxruntime as ort

    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


def _out_of_memory(exc: Exception) -> bool:
    """Whether ORT failed because its arena could not give a tensor's memory."""
    text = str(exc)
    return "Available memory of" in text or "Failed to allocate memory" in text


def _tensor_spec(node_arg: Any, kind: str) -> TensorSpec:
    datatype = ORT_TO_KSERVE.get(node_arg.type)
    if datatype is None:
        raise FailedPrecondition(
            f"model {kind} {node_arg.name!r} has type {node_arg.type}, which {RUNTIME_NAME} "
            f"cannot serve; supported types: {sorted(ORT_TO_KSERVE)}"
        )
    # Symbolic ("batch") and unknown (None) dims are dynamic.
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in node_arg.shape or ())
    return TensorSpec(node_arg.name, datatype, shape)


def signature_of(session: onnxruntime.InferenceSession) -> Signature:
    return Signature(
        inputs=tuple(_tensor_spec(a, "input") for a in session.get_inputs()),
        outputs=tuple(_tensor_spec(a, "output") for a in session.get_outputs()),
    )


class OrtSession(Session):
    """One InferenceSession. `InferenceSession.run` is thread safe, so no lock here."""

    def __init__(self, session: onnxruntime.InferenceSession, options: OrtOptions) -> None:
        self._session: onnxruntime.InferenceSession | None = session
        self.options = options
        self.signature = signature_of(session)
        self._all_outputs = [t.name for t in self.signature.outputs]
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

        self._ort_invalid_argument: type[Exception] = ort_state.InvalidArgument
        self._run_options = _run_options()

    def run(
        self, inputs: dict[str, np.ndarray], output_names: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        session = self._session
        if session is None:
            raise FailedPrecondition(f"{RUNTIME_NAME} session is closed")
        names = list(output_names) if output_names else self._all_outputs
        try:
            values = session.run(names, inputs, self._run_options)
        except self._ort_invalid_argument as exc:
            raise InvalidArgument(f"{RUNTIME_NAME} rejected the request: {exc}") from None
        except Exception as exc:  # ORT's own error types share no base but Exception
            if _out_of_memory(exc):
                raise ResourceExhausted(
                    f"{RUNTIME_NAME}: the request needs more memory than this server gives "
                    f"inference ({_shared_arena_bytes} bytes, PARETO_INFERENCE_MEMORY_BYTES, "
                    "shared by the requests running now); send a smaller batch or shorter "
                    "inputs, or retry"
                ) from None
            raise Internal(f"{RUNTIME_NAME} failed to run the model: {exc}") from None
        return dict(zip(names, values, strict=True))

    def close(self) -> None:
        self._session = None


class OnnxRuntimeCpu(Runtime):
    name = RUNTIME_NAME
    formats = frozenset({FORMAT_ONNX, FORMAT_ONNX_BUNDLE})
    options_model = OrtOptions

    def thread_options(self, threads: int) -> Options:
        return {"intra_op_threads": threads, "inter_op_threads": 1}

    def set_memory_limit(self, max_bytes: int) -> None:
        set_memory_limit(max_bytes)

    def available(self) -> str | None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            return f"the onnxruntime package is not importable ({exc}); pip install onnxruntime"
        if "CPUExecutionProvider" not in ort.get_available_providers():
            return "onnxruntime is installed but has no CPUExecutionProvider"
        return None

    def load(self, model_path: Path, options: dict[str, Any] | None = None) -> OrtSession:
        opts = parse_options(RUNTIME_NAME, OrtOptions, options)
        path = _model_file(Path(model_path))
        import onnxruntime as ort

        try:
            session = ort.InferenceSession(
                str(path), sess_options=session_options_from(opts), providers=list(PROVIDERS)
            )
        except Exception as exc:  # InvalidProtobuf, InvalidGraph, Fail, NotImplemented, ...
            raise FailedPrecondition(f"{RUNTIME_NAME} cannot load model {path}: {exc}") from None
        return OrtSession(session, opts)

    def describe(self) -> RuntimeDescription:
        import onnxruntime as ort

        return RuntimeDescription(
            name=RUNTIME_NAME,
            version=ort.__version__,
            device="cpu",
            accelerated=False,
            details={
                "providers": ",".join(PROVIDERS),
                "available_providers": ",".join(ort.get_available_providers()),
            },
        )


def _model_file(path: Path) -> Path:
    """`path` itself, or the single .onnx file inside `path` when it is an extracted bundle."""
    if path.is_dir():
        found = sorted(path.glob("*.onnx"))
        if len(found) != 1:
            names = [p.name for p in found]
            raise FailedPrecondition(
                f"bundle directory {path} must hold exactly one .onnx file, got {names}"
            )
        return found[0]
    if not path.is_file():
        raise FailedPrecondition(f"model file {path} does not exist")
    return path
