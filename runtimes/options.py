"""Runtime options: validated per runtime, completed in one order for serving and for jobs.

Every runtime declares its options as a frozen pydantic model (`Runtime.options_model`);
`parse_options` validates a mapping against it with messages naming the field.
`Runtime.resolve_options` is the one place where the options a session loads with are put
together, in this order (later wins):

1. the process's defaults for that runtime (`PARETO_RUNTIME_OPTIONS`, and the
   `PARETO_ORT_*` settings for `onnxruntime_cpu`),
2. the caller's options (a deployment target's `runtime_options`, a job's thread count),
3. what only the process knows, filled in by the runtime itself
   (`Runtime.complete_options`: a served name, a stored dataset's file).

A caller may not set an option the runtime reserves for the process
(`Runtime.server_options`, such as a filesystem path).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, Field, ValidationError

from pareto_core.errors import InvalidArgument
from pareto_core.tensors import Signature

OptionsT = TypeVar("OptionsT", bound=BaseModel)
MAX_DEVICE_ID = 63


def host_cpus() -> int:
    """The CPUs this process may run on: the most threads a thread option may ask for."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _within_host_cpus(threads: int) -> int:
    cpus = host_cpus()
    if threads > cpus:
        raise ValueError(f"at most the {cpus} CPUs of this host")
    return threads


# A thread count: 0 (where allowed) means the runtime's own choice; never more than the host's
# CPUs, since more threads only add contention (and thousands exhaust the process).
Threads = Annotated[int, Field(ge=0), AfterValidator(_within_host_cpus)]
DeviceId = Annotated[int, Field(ge=0, le=MAX_DEVICE_ID)]
Options = dict[str, Any]
DatasetLookup = Callable[[str], Path]


@dataclass(frozen=True)
class OptionContext:
    """What the process knows that a caller's options do not say."""

    # The KServe model name the session serves ("digits", "digits.var-0123456789").
    served_name: str = ""
    # A stored dataset's .npz file by name; None where datasets cannot be looked up.
    find_dataset: DatasetLookup | None = None
    # A job measuring on a runtime that calibrates: its own calibration dataset, which
    # replaces any other (a job's figures depend on its inputs only).
    calibration_dataset: str = ""
    # The stored model being loaded: its sha256 and its signature (what a runtime serving
    # it from elsewhere checks it really serves).
    model_sha256: str = ""
    signature: Signature | None = None


def parse_options(
    runtime: str, model: type[OptionsT], options: Mapping[str, Any] | BaseModel | None
) -> OptionsT:
    """`options` validated as `model`; InvalidArgument names each bad field and the value."""
    if isinstance(options, model):
        return options
    if options is not None and not isinstance(options, Mapping):
        raise InvalidArgument(f"{runtime} options must be a mapping, got {type(options).__name__}")
    try:
        return model.model_validate(dict(options or {}))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            if error["type"] == "extra_forbidden":
                known = sorted(model.model_fields)
                problems.append(f"unknown {runtime} option {field!r}; known options: {known}")
            else:
                problems.append(
                    f"{runtime} option {field!r}: {error['msg']} (got {error['input']!r})"
                )
        raise InvalidArgument("; ".join(problems)) from None
