"""Which runtimes exist, by name, and which one serves a stored model format.

Backends are listed as ``"module:Class"`` strings and imported only when first asked for,
so ``import runtimes.registry`` pulls in no backend library. Adding a backend is one line
in `BACKENDS`; the order of that table is the order of preference in `runtime_for_format`.
"""

from __future__ import annotations

import importlib
import threading

from pareto_core.errors import FailedPrecondition, InvalidArgument
from runtimes.base import Runtime

# name -> "module:Class" (or a Runtime class); earlier entries win when several runtimes
# accept one format.
BACKENDS: dict[str, str | type[Runtime]] = {
    "onnxruntime_cpu": "runtimes.onnxruntime_cpu:OnnxRuntimeCpu",
    # Only when asked for by name (auto_select = False): a build step, a device or a
    # remote server they need is never chosen for a user (see README "Runtimes").
    "tensorrt_gpu": "runtimes.tensorrt_gpu:TensorRtGpu",
    "torch_cuda": "runtimes.torch_cuda:TorchCuda",
    "edgetpu_tflite": "runtimes.edgetpu_tflite:EdgeTpuTflite",
    "triton_remote": "runtimes.triton_remote:TritonRemote",
}


class RuntimeRegistry:
    """Runtime instances keyed by name, created lazily (one instance per name).

    A backend is a ``"module:Class"`` string (imported on first use) or a Runtime class.
    """

    def __init__(self, backends: dict[str, str | type[Runtime]]) -> None:
        self._backends = dict(backends)
        self._instances: dict[str, Runtime] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return list(self._backends)

    def get(self, name: str) -> Runtime:
        """The runtime called `name`; InvalidArgument listing the known names if none is."""
        target = self._backends.get(name)
        if target is None:
            raise InvalidArgument(f"unknown runtime {name!r}; known runtimes: {self.names()}")
        with self._lock:
            runtime = self._instances.get(name)
            if runtime is None:
                runtime = _instantiate(name, target)
                self._instances[name] = runtime
            return runtime

    def all(self) -> list[Runtime]:
        return [self.get(name) for name in self._backends]

    def for_format(self, fmt: str) -> Runtime:
        """The first available runtime accepting `fmt`, else FailedPrecondition saying why."""
        candidates = [rt for rt in self.all() if fmt in rt.formats and rt.auto_select]
        reasons: list[str] = []
        for runtime in candidates:
            missing = runtime.available()
            if missing is None:
                return runtime
            reasons.append(f"{runtime.name}: {missing}")
        if not candidates:
            accepted = {rt.name: sorted(rt.formats) for rt in self.all() if rt.auto_select}
            by_name = [rt.name for rt in self.all() if fmt in rt.formats]
            hint = f"; runtimes that serve it when asked for by name: {by_name}" if by_name else ""
            raise FailedPrecondition(
                f"no runtime on this host serves model format {fmt!r} by default: no default "
                f"runtime accepts it (default runtimes and their formats: {accepted}){hint}"
            )
        raise FailedPrecondition(
            f"no runtime for model format {fmt!r} is available on this host: " + "; ".join(reasons)
        )


def _instantiate(name: str, target: str | type[Runtime]) -> Runtime:
    cls = _import_class(name, target) if isinstance(target, str) else target
    runtime = cls()
    if not isinstance(runtime, Runtime) or runtime.name != name:
        raise TypeError(f"{target} is not a runtimes.base.Runtime named {name!r}")
    return runtime


def _import_class(name: str, target: str) -> type[Runtime]:
    module_name, _, class_name = target.partition(":")
    try:
        found: type[Runtime] = getattr(importlib.import_module(module_name), class_name)
        return found
    except (ImportError, AttributeError) as exc:
        message = f"runtime {name!r} cannot be loaded from {target!r}: {exc}"
        raise FailedPrecondition(message) from exc


_DEFAULT = RuntimeRegistry(BACKENDS)


def get_runtime(name: str) -> Runtime:
    return _DEFAULT.get(name)


def list_runtimes() -> list[Runtime]:
    return _DEFAULT.all()


def runtime_for_format(fmt: str) -> Runtime:
    return _DEFAULT.for_format(fmt)
