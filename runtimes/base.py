"""The runtime interface every backend implements.

A runtime turns a stored model file into a loaded session and runs it on numpy arrays.
Backend libraries (onnxruntime, tensorrt, ...) are imported lazily inside each backend
module so that importing this file stays cheap.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel

from pareto_core.errors import InvalidArgument
from pareto_core.tensors import KSERVE_TO_NUMPY, Signature
from runtimes.options import OptionContext, Options, parse_options


@dataclass(frozen=True)
class RuntimeDescription:
    """What a runtime really runs on, for `describe()` and metric labels."""

    name: str
    version: str
    device: str
    accelerated: bool
    details: dict[str, str] = field(default_factory=dict)


class Session(abc.ABC):
    """A loaded model, ready to run. Thread-safe: `run` may be called concurrently."""

    signature: Signature

    @abc.abstractmethod
    def run(
        self, inputs: dict[str, np.ndarray], output_names: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Run once. Inputs are already validated against `signature`."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the session holds."""


@dataclass(frozen=True)
class Capabilities:
    """What a runtime can run: stored model formats, KServe datatypes, devices it may use."""

    formats: tuple[str, ...]
    datatypes: tuple[str, ...]
    devices: tuple[str, ...]


class Runtime(abc.ABC):
    """A backend that can load model files of some formats into sessions."""

    name: str
    formats: frozenset[str]
    # False: never picked by `runtime_for_format`, only when asked for by name.
    auto_select: bool = True
    # The runtime's options (a frozen pydantic model that refuses unknown fields).
    options_model: ClassVar[type[BaseModel]]
    # Options only the process sets, each with the hint a caller who gives one gets.
    server_options: ClassVar[Mapping[str, str]] = {}
    # Its build quantizes on a representative dataset: measuring a job's models on it
    # needs the job's calibration dataset.
    needs_calibration: ClassVar[bool] = False

    def parse_options(self, options: Mapping[str, Any] | BaseModel | None) -> Any:
        """`options` validated as `options_model` (InvalidArgument naming each bad field)."""
        return parse_options(self.name, self.options_model, options)

    def thread_options(self, threads: int) -> Options:
        """Options that run a session on `threads` threads (how jobs measure); {} for a
        runtime without a thread setting."""
        return {}

    def set_memory_limit(self, max_bytes: int) -> None:  # noqa: B027 - optional hook
        """Bound the memory this runtime's inference may take in this process, where it
        can (runtimes/onnxruntime_cpu.py); others ignore it."""

    def complete_options(self, options: Options, context: OptionContext) -> Options:
        """Fill in what only the process knows (runtimes/options.py); default: nothing."""
        return options

    def resolve_options(
        self,
        defaults: Mapping[str, Any],
        given: Mapping[str, Any] | None,
        context: OptionContext,
    ) -> Options:
        """The options a session of this runtime loads with: the process's `defaults` for
        it, then the caller's `given` ones, then `complete_options` (runtimes/options.py).
        A caller may not give a `server_options` option."""
        given = dict(given or {})
        for name, hint in self.server_options.items():
            if name in given:
                raise InvalidArgument(f"{self.name} option {name!r} is set by the server; {hint}")
        return self.complete_options({**defaults, **given}, context)

    def capabilities(self) -> Capabilities:
        """Formats, datatypes and devices; backends narrow the defaults."""
        return Capabilities(tuple(sorted(self.formats)), tuple(KSERVE_TO_NUMPY), ("cpu",))

    # The prepare step: backends that must build what they load (an engine, a .tflite)
    # override `build` and `build_key_parts`; `runtimes.artifacts.ArtifactCache.prepare`
    # runs the build once and caches its output in the store.

    def build_key_parts(self, options: dict[str, Any] | None = None) -> dict[str, str]:
        """What, besides the model's sha256, an artifact built by this runtime depends on
        (runtime version, device, options): the artifact cache key (runtimes/artifacts.py)."""
        return {}

    def build(self, model_path: Path, out_dir: Path, options: dict[str, Any] | None) -> Path:
        """Write the artifact for `model_path` under the empty `out_dir`; return the path
        (inside `out_dir`) that `load` takes."""
        raise NotImplementedError(f"runtime {self.name!r} has no build step")

    def needs_build(self) -> bool:
        return type(self).build is not Runtime.build

    @abc.abstractmethod
    def available(self) -> str | None:
        """None when usable on this host, else a sentence saying what is missing."""

    @abc.abstractmethod
    def load(self, model_path: Path, options: dict[str, Any] | None = None) -> Session:
        """Load the model file (or extracted bundle's .onnx) at `model_path`."""

    @abc.abstractmethod
    def describe(self) -> RuntimeDescription: ...
