"""A torch.export archive (.pt2) run by PyTorch on an NVIDIA GPU, optionally through
`torch.compile(mode="reduce-overhead")` (CUDA graphs).

Load: the archive is checked again (torch-free structure and contents, as at upload) and
loaded with `runtimes.pt2_inspect.load_restricted`, the only way Pareto loads a user's
.pt2; its constants and device arguments are moved to `cuda:<device_id>` with torch's
`move_to_device_pass`, then `.module()` is taken. `ExportedProgram.module()` refuses
`train()`/`eval()` in torch 2.13: the exported graph keeps the mode it was exported in
(export is normally done in eval mode), and every call runs under `torch.inference_mode`.
With `compile`, the module goes through `torch.compile(mode="reduce-overhead",
dynamic=False)`: one CUDA graph per input shape, recorded at load by `warmup_iters` calls
for each configured shape (`warmup_shapes`, or the signature with a dynamic batch dim set
to 1). A request of another shape is served too, but its first call compiles and records.

Inference: inputs are copied to the device (non-blocking from the numpy buffer), the
module runs, outputs are copied back to numpy (the copy synchronizes). Calls are
serialized by a lock: CUDA-graph replays share static buffers.

Needs a CUDA build of torch and a CUDA device. `available()` says which is missing
("torch has no CUDA support (CPU build)" / "no CUDA device") without importing torch: the
build is read from torch/version.py and the devices are counted through the driver
(libcuda) unless torch is already imported. Importing this module imports no torch.
"""

from __future__ import annotations

import math
import sys
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pareto_core.errors import FailedPrecondition, Internal, InvalidArgument
from pareto_core.formats import FORMAT_TORCH_EXPORT
from pareto_core.tensors import KSERVE_TO_NUMPY, Signature, TensorSpec
from runtimes.base import Capabilities, Runtime, RuntimeDescription, Session
from runtimes.cuda_probe import missing_requirement
from runtimes.options import DeviceId

RUNTIME_NAME = "torch_cuda"
FORMATS = frozenset({FORMAT_TORCH_EXPORT})


# KServe datatype -> torch dtype attribute name (torch imported only when converting).
KSERVE_TO_TORCH: dict[str, str] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
}
TORCH_TO_KSERVE: dict[str, str] = {v: k for k, v in KSERVE_TO_TORCH.items()}


MAX_WARMUP_ELEMENTS = 1 << 24  # per warm-up input tensor


class TorchCudaOptions(BaseModel):
    """`compile`: torch.compile with CUDA graphs; `warmup_shapes`: {input: [shape, ...]}
    (the same number of shapes for every input, one warm-up call per index)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device_id: DeviceId = 0
    compile: bool = False
    warmup_shapes: dict[str, list[list[int]]] = Field(default_factory=dict)
    warmup_iters: int = Field(3, ge=1, le=100)

    @field_validator("warmup_shapes")
    @classmethod
    def _shapes_are_positive(cls, value: dict[str, list[list[int]]]) -> dict[str, list[list[int]]]:
        counts = {len(shapes) for shapes in value.values()}
        if len(counts) > 1:
            raise ValueError("every input needs the same number of warm-up shapes")
        for name, shapes in value.items():
            if not shapes:
                raise ValueError(f"input {name!r} has no shape")
            for shape in shapes:
                if any(d < 1 for d in shape):
                    raise ValueError(f"input {name!r}: shape {shape} has a dim below 1")
                if math.prod(shape) > MAX_WARMUP_ELEMENTS:
                    raise ValueError(
                        f"input {name!r}: shape {shape} has over {MAX_WARMUP_ELEMENTS} elements"
                    )
        return value


def torch_dtype(datatype: str) -> Any:
    """The torch dtype of a KServe datatype; FailedPrecondition for one torch lacks."""
    import torch

    name = KSERVE_TO_TORCH.get(datatype)
    if name is None or not hasattr(torch, name):
        raise FailedPrecondition(f"{RUNTIME_NAME} cannot serve datatype {datatype!r}")
    return getattr(torch, name)


def kserve_datatype(dtype: Any) -> str:
    """The KServe datatype of a torch dtype (`torch.float32` or 'float32')."""
    name = str(dtype).removeprefix("torch.")
    if name not in TORCH_TO_KSERVE:
        raise FailedPrecondition(f"{RUNTIME_NAME} cannot serve torch dtype {name}")
    return TORCH_TO_KSERVE[name]


def warmup_plan(signature: Signature, opts: TorchCudaOptions) -> list[dict[str, tuple[int, ...]]]:
    """The input shapes run at load (one dict per warm-up call); empty without `compile`.
    Shapes are checked against the signature (rank, fixed dims, known input names)."""
    if not opts.compile:
        return []
    names = [t.name for t in signature.inputs]
    unknown = sorted(set(opts.warmup_shapes) - set(names))
    if unknown:
        raise InvalidArgument(
            f"{RUNTIME_NAME} option 'warmup_shapes' names unknown inputs {unknown}; inputs: {names}"
        )
    if not opts.warmup_shapes:
        default = {}
        for spec in signature.inputs:
            if any(d < 0 for d in spec.shape[1:]):
                raise InvalidArgument(
                    f"{RUNTIME_NAME}: input {spec.name!r} has dynamic dims {list(spec.shape)} "
                    f"beyond the batch; give option warmup_shapes.{spec.name}"
                )
            default[spec.name] = tuple(1 if d < 0 else d for d in spec.shape)
        return [default]
    missing = [n for n in names if n not in opts.warmup_shapes]
    if missing:
        raise InvalidArgument(f"{RUNTIME_NAME} option 'warmup_shapes' lacks inputs {missing}")
    count = len(next(iter(opts.warmup_shapes.values())))
    plan: list[dict[str, tuple[int, ...]]] = [{} for _ in range(count)]
    for spec in signature.inputs:
        for i, shape in enumerate(opts.warmup_shapes[spec.name]):
            _check_shape(spec, shape)
            plan[i][spec.name] = tuple(shape)
    return plan


def _check_shape(spec: TensorSpec, shape: list[int]) -> None:
    if len(shape) != len(spec.shape):
        raise InvalidArgument(
            f"{RUNTIME_NAME} warm-up shape {shape} of {spec.name!r} has rank {len(shape)}, "
            f"the input has rank {len(spec.shape)} {list(spec.shape)}"
        )
    for i, (got, want) in enumerate(zip(shape, spec.shape, strict=True)):
        if want >= 0 and got != want:
            raise InvalidArgument(
                f"{RUNTIME_NAME} warm-up shape {shape} of {spec.name!r}: dim {i} must be {want}"
            )


def _not_available(missing: str) -> FailedPrecondition:
    return FailedPrecondition(f"runtime {RUNTIME_NAME!r} is not available: {missing}")


# -- session -------------------------------------------------------------------------


class TorchCudaSession(Session):
    def __init__(self, module: Any, signature: Signature, device: Any, compiled: bool) -> None:
        self._module: Any = module
        self.signature = signature
        self._device = device
        self.device = f"{device} ({_device_name(device)})"
        self.compiled = compiled
        self._lock = threading.Lock()
        self._output_names = [t.name for t in signature.outputs]

    def _call(self, inputs: dict[str, np.ndarray]) -> list[Any]:
        import torch

        module = self._module
        if module is None:
            raise FailedPrecondition(f"{RUNTIME_NAME} session is closed")
        args = []
        for spec in self.signature.inputs:
            array = np.ascontiguousarray(inputs[spec.name], dtype=spec.numpy_dtype)
            args.append(torch.from_numpy(array).to(self._device, non_blocking=True))
        with torch.inference_mode():
            result = module(*args)
        values = list(result) if isinstance(result, tuple | list) else [result]
        if len(values) != len(self._output_names):
            raise Internal(
                f"{RUNTIME_NAME}: the model returned {len(values)} outputs, its signature "
                f"has {len(self._output_names)}"
            )
        return values

    def run(
        self, inputs: dict[str, np.ndarray], output_names: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        with self._lock:
            try:
                values = self._call(inputs)
                # .cpu() copies (and synchronizes) before a CUDA-graph replay reuses buffers
                out = {
                    name: value.detach().cpu().numpy()
                    for name, value in zip(self._output_names, values, strict=True)
                }
            except (FailedPrecondition, Internal):
                raise
            except Exception as exc:
                if "Guard failed" not in str(exc):
                    raise Internal(f"{RUNTIME_NAME} failed to run the model: {exc}") from None
                # the exported program's shape guards (e.g. the batch range it was exported for)
                raise InvalidArgument(
                    f"{RUNTIME_NAME}: input outside the shapes the model was exported for: {exc}"
                ) from None
        names = list(output_names) if output_names else self._output_names
        return {name: out[name] for name in names}

    def warm_up(self, plan: list[dict[str, tuple[int, ...]]], iters: int) -> None:
        for shapes in plan:
            inputs = {
                spec.name: np.zeros(shapes[spec.name], spec.numpy_dtype)
                for spec in self.signature.inputs
            }
            for _ in range(iters):
                self.run(inputs)

    def describe(self) -> RuntimeDescription:
        import torch

        details = {"cuda": str(torch.version.cuda), "compile": _on_off(self.compiled)}
        return RuntimeDescription(RUNTIME_NAME, torch.__version__, self.device, True, details)

    def close(self) -> None:
        with self._lock:
            self._module = None
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()


class TorchCuda(Runtime):
    name = RUNTIME_NAME
    formats = FORMATS
    auto_select = False  # only when asked for: never a silent switch of device
    options_model = TorchCudaOptions

    def __init__(self) -> None:
        self._sessions: weakref.WeakSet[TorchCudaSession] = weakref.WeakSet()

    def capabilities(self) -> Capabilities:
        return Capabilities(tuple(sorted(self.formats)), tuple(KSERVE_TO_TORCH), ("cuda",))

    def available(self) -> str | None:
        return missing_requirement()

    def load(self, model_path: Path, options: dict[str, Any] | None = None) -> TorchCudaSession:
        opts = self.parse_options(options)
        missing = missing_requirement()
        if missing is not None:
            raise _not_available(missing)
        import torch
        from torch.export.passes import move_to_device_pass

        from runtimes import pt2_inspect

        path = Path(model_path)
        if opts.device_id >= torch.cuda.device_count():
            raise InvalidArgument(
                f"{RUNTIME_NAME} option 'device_id' is {opts.device_id}, this host has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
        try:
            pt2_inspect.check_archive(path)
            pt2_inspect.check_contents(path)
            program = pt2_inspect.load_restricted(path)
            signature = _signature(pt2_inspect.signature_json(program))
        except pt2_inspect.ArchiveRejected as exc:
            raise FailedPrecondition(f"{RUNTIME_NAME} cannot load {path.name}: {exc}") from None
        plan = warmup_plan(signature, opts)
        device = torch.device("cuda", opts.device_id)
        try:
            module: Any = move_to_device_pass(program, str(device)).module()
            if opts.compile:
                module = torch.compile(module, mode="reduce-overhead", dynamic=False)
        except Exception as exc:
            raise FailedPrecondition(f"{RUNTIME_NAME} cannot load {path.name}: {exc}") from None
        session = TorchCudaSession(module, signature, device, opts.compile)
        session.warm_up(plan, opts.warmup_iters)
        self._sessions.add(session)
        return session

    def describe(self) -> RuntimeDescription:
        missing = missing_requirement()
        if missing is not None:
            return RuntimeDescription(RUNTIME_NAME, "", "none", False, {"missing": missing})
        import torch

        compiled = any(s.compiled for s in list(self._sessions) if s._module is not None)
        return RuntimeDescription(
            RUNTIME_NAME,
            torch.__version__,
            f"cuda:0 ({_device_name(torch.device('cuda', 0))})",
            True,
            {"cuda": str(torch.version.cuda), "compile": _on_off(compiled)},
        )


def _device_name(device: Any) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def _on_off(compiled: bool) -> str:
    """Whether torch.compile (reduce-overhead: CUDA graphs) is active."""
    return "reduce-overhead (CUDA graphs)" if compiled else "off (eager)"


def _signature(data: dict[str, list[dict[str, Any]]]) -> Signature:
    return Signature(
        tuple(TensorSpec.from_json(t) for t in data["inputs"]),
        tuple(TensorSpec.from_json(t) for t in data["outputs"]),
    )


assert set(KSERVE_TO_TORCH) == set(KSERVE_TO_NUMPY)
