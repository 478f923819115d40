"""How a model is served: dynamic batching and warm-up (Triton's model config, in brief).

A model's serving config is stored by name (`ModelService.SetServingConfig`, `pareto
config`) and applies to every version and variant served under it. Without one, a model
whose every input and output has a dynamic first (batch) axis is batched with the
defaults below (no added delay: only requests already waiting are grouped), and warmed
up once at batch 1 when it loads.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pareto_core.errors import FailedPrecondition, InvalidArgument
from pareto_core.tensors import Signature
from runtimes.triton_config import batchable

MAX_BATCH = 4096


class BatchingConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # None: on when every input and output has a dynamic first axis (it can be batched).
    enabled: bool | None = None
    # Rows one run takes at most; a request with more rows runs alone.
    max_batch_size: int = Field(64, ge=1, le=MAX_BATCH)
    # How long the first request of a batch may wait for others (0: group only those
    # already waiting).
    max_queue_delay_us: int = Field(0, ge=0, le=10_000_000)
    # Batch sizes worth stopping at when reached before max_batch_size.
    preferred_batch_sizes: tuple[int, ...] = ()
    # Requests waiting at most; more are answered RESOURCE_EXHAUSTED.
    max_queue_size: int = Field(256, ge=1, le=1_000_000)
    # Inputs whose non-batch dims may differ between requests of one batch: they are
    # padded with zeros to the largest (a token mask makes that exact for a pooled model).
    pad_inputs: tuple[str, ...] = ()
    # Runs of the model at once, each on a batch (Triton's instance count); 0: as many as
    # the CPUs of the host.
    instances: int = Field(0, ge=0, le=64)

    @model_validator(mode="after")
    def _preferred_within_max(self) -> BatchingConfig:
        bad = [b for b in self.preferred_batch_sizes if not 1 <= b <= self.max_batch_size]
        if bad:
            raise ValueError(
                f"preferred_batch_sizes {bad} are outside 1..max_batch_size ({self.max_batch_size})"
            )
        return self


class WarmupConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    runs: int = Field(1, ge=0, le=100)  # 0: no warm-up
    batch_sizes: tuple[int, ...] = (1,)
    # Per input: the sizes of its dynamic non-batch dims (default 1 each).
    dims: dict[str, tuple[int, ...]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _sizes_positive(self) -> WarmupConfig:
        if any(not 1 <= b <= MAX_BATCH for b in self.batch_sizes):
            raise ValueError(f"batch_sizes must be in 1..{MAX_BATCH}, got {self.batch_sizes}")
        for name, dims in self.dims.items():
            if any(d < 1 for d in dims) or math.prod(dims) > 1 << 24:
                raise ValueError(f"dims of {name!r} must be >= 1 and small, got {dims}")
        return self


class ServingConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    batching: BatchingConfig = BatchingConfig()
    warmup: WarmupConfig = WarmupConfig()

    def batching_on(self, signature: Signature) -> bool:
        if self.batching.enabled is None:
            return batchable(signature)
        return self.batching.enabled


DEFAULT = ServingConfig()


def parse(data: dict[str, Any] | None) -> ServingConfig:
    """`data` validated; InvalidArgument names each bad field."""
    try:
        return ServingConfig.model_validate(data or {})
    except ValidationError as exc:
        problems = [
            f"config.{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise InvalidArgument("invalid serving config: " + "; ".join(problems)) from None


def check_against(config: ServingConfig, signature: Signature, model: str) -> None:
    """What the config says must hold for this model's signature."""
    batching = config.batching
    if batching.enabled and not batchable(signature):
        raise FailedPrecondition(
            f"model {model!r} cannot be batched: every input and output needs a dynamic "
            "first (batch) axis"
        )
    names = {t.name for t in signature.inputs}
    named_inputs = (
        ("batching.pad_inputs", batching.pad_inputs),
        ("warmup.dims", tuple(config.warmup.dims)),
    )
    for field, named in named_inputs:
        unknown = sorted(set(named) - names)
        if unknown:
            raise InvalidArgument(
                f"config.{field} names {unknown}, which are not inputs of {model!r} "
                f"(its inputs: {sorted(names)})"
            )
    fixed_outputs = all(-1 not in t.shape[1:] for t in signature.outputs)
    if batching.pad_inputs and not fixed_outputs:
        raise FailedPrecondition(
            f"config.batching.pad_inputs: padding needs outputs whose only dynamic axis is "
            f"the batch axis, but {model!r} has outputs "
            f"{[(t.name, list(t.shape)) for t in signature.outputs]}"
        )
