"""The TensorRT build plan, without TensorRT: options, optimization profiles, precision
flags, and the shape check of each request against the engine's profile.

Everything here is plain Python so it is unit-tested on hosts without TensorRT or a GPU;
`runtimes/tensorrt_gpu.py` turns the plan into TensorRT API calls.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from pareto_core.errors import InvalidArgument
from pareto_core.tensors import Signature
from runtimes.options import DeviceId

Shape = tuple[int, ...]
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


class ShapeRange(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


class TensorRtOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    fp16: bool = False  # allow fp16 kernels (when the GPU has fast fp16)
    int8: bool = True  # use int8 where the graph has Q/DQ nodes (explicit quantization)
    workspace_bytes: int = Field(1 << 30, ge=1 << 20, le=1 << 40)
    max_batch_size: int = Field(32, ge=1, le=65_536)  # max of a dynamic batch dim's profile
    opt_batch_size: int = Field(0, ge=0, le=65_536)  # 0: half of max_batch_size (at least 1)
    shapes: dict[str, ShapeRange] = Field(default_factory=dict)  # per input: min/opt/max
    builder_optimization_level: int = Field(3, ge=0, le=5)
    timing_cache: bool = True
    device_id: DeviceId = 0


@dataclass(frozen=True)
class Profile:
    """Per input name: (min, opt, max) shapes of one TensorRT optimization profile."""

    ranges: dict[str, tuple[Shape, Shape, Shape]]

    def to_json(self) -> str:
        return json.dumps({k: [list(s) for s in v] for k, v in sorted(self.ranges.items())})


def derive_profile(signature: Signature, options: TensorRtOptions) -> Profile:
    """A profile covering every input: user-given shapes where given (checked against the
    model), else fixed dims as they are and a dynamic first dim from 1 to
    `max_batch_size`. Any other dynamic dim without user shapes is InvalidArgument."""
    unknown = sorted(set(options.shapes) - {t.name for t in signature.inputs})
    if unknown:
        names = [t.name for t in signature.inputs]
        raise InvalidArgument(
            f"tensorrt_gpu option shapes names unknown inputs {unknown}; inputs: {names}"
        )
    opt_batch = options.opt_batch_size or max(1, options.max_batch_size // 2)
    if opt_batch > options.max_batch_size:
        raise InvalidArgument(
            f"tensorrt_gpu option opt_batch_size ({opt_batch}) exceeds max_batch_size "
            f"({options.max_batch_size})"
        )
    ranges: dict[str, tuple[Shape, Shape, Shape]] = {}
    for spec in signature.inputs:
        given = options.shapes.get(spec.name)
        if given is not None:
            ranges[spec.name] = _check_given(spec.name, spec.shape, given)
            continue
        dynamic = [i for i, d in enumerate(spec.shape) if d == -1]
        if any(i != 0 for i in dynamic):
            raise InvalidArgument(
                f"input {spec.name!r} {list(spec.shape)} has dynamic dims beyond the batch "
                f"dim: give its min/opt/max in tensorrt_gpu option shapes.{spec.name}"
            )
        low = tuple(1 if d == -1 else d for d in spec.shape)
        mid = tuple(opt_batch if d == -1 else d for d in spec.shape)
        high = tuple(options.max_batch_size if d == -1 else d for d in spec.shape)
        ranges[spec.name] = (low, mid, high)
    return Profile(ranges)


def _check_given(name: str, model_shape: Shape, given: ShapeRange) -> tuple[Shape, Shape, Shape]:
    field = f"tensorrt_gpu option shapes.{name}"
    shapes = (given.min, given.opt, given.max)
    for shape in shapes:
        if len(shape) != len(model_shape):
            raise InvalidArgument(
                f"{field}: rank {len(shape)} != the input's rank {len(model_shape)} "
                f"({list(model_shape)})"
            )
        for axis, (want, got) in enumerate(zip(model_shape, shape, strict=True)):
            if got < 1 or (want != -1 and got != want):
                expected = "fixed at " + str(want) if want != -1 else ">= 1"
                raise InvalidArgument(f"{field}: dim {axis} must be {expected}, got {got}")
    for axis in range(len(model_shape)):
        if not given.min[axis] <= given.opt[axis] <= given.max[axis]:
            raise InvalidArgument(f"{field}: dim {axis} needs min <= opt <= max, got {shapes}")
    return shapes


def check_in_profile(inputs: Mapping[str, Sequence[int]], profile: Profile) -> None:
    """InvalidArgument naming the tensor, its shape and the allowed range when a request
    falls outside the engine's optimization profile."""
    for name, shape in inputs.items():
        low, _, high = profile.ranges[name]
        inside = len(shape) == len(low) and all(
            lo <= d <= hi for lo, d, hi in zip(low, shape, high, strict=True)
        )
        if not inside:
            raise InvalidArgument(
                f"input {name!r} shape {list(shape)} is outside the TensorRT engine's "
                f"profile: allowed from {list(low)} to {list(high)} (per dim)"
            )


def precision_flags(options: TensorRtOptions, has_qdq: bool, fast_fp16: bool) -> list[str]:
    """BuilderFlag names to set: INT8 only for graphs with Q/DQ nodes (their scales say
    how; no calibrator), FP16 when asked for and the GPU has fast fp16."""
    flags = []
    if options.fp16 and fast_fp16:
        flags.append("FP16")
    if options.int8 and has_qdq:
        flags.append("INT8")
    return flags


def has_qdq_nodes(op_types: set[str]) -> bool:
    return bool(op_types & QDQ_OPS)


def build_key_parts(
    options: TensorRtOptions, trt_version: str, gpu: str, compute_capability: str
) -> dict[str, str]:
    """Everything an engine depends on besides the model: a new TensorRT, another GPU
    model or other options give a new cache key, so the engine is rebuilt."""
    return {
        "tensorrt": trt_version,
        "gpu": gpu,
        "compute_capability": compute_capability,
        "options": options.model_dump_json(),
    }
