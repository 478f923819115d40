"""Loaded runtime sessions: load once per servable, share, drain before unloading."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pareto_core.errors import FailedPrecondition
from pareto_core.formats import FORMAT_ONNX_BUNDLE
from pareto_core.tensors import Signature
from runtimes import registry
from runtimes.base import Runtime, Session
from service import metrics
from service.serving.servables import Servable, ServableResolver
from service.store.blobs import BlobStore
from service.store.bundles import find_onnx

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    servable: Servable
    runtime: Runtime
    session: Session
    model_path: Path
    options: dict[str, Any]
    in_flight: int = 0
    draining: bool = False
    idle: threading.Condition = field(default_factory=threading.Condition)

    @property
    def labels(self) -> tuple[str, str, str]:
        """(model, variant, runtime) metric labels."""
        return (self.servable.model, self.servable.variant_label, self.runtime.name)

    @property
    def signature(self) -> Signature:
        return self.servable.signature


class SessionManager:
    """Owns every loaded session. Thread-safe; a servable is loaded at most once."""

    def __init__(
        self,
        resolver: ServableResolver,
        blobs: BlobStore,
        runtime_options: dict[str, Any],
        load_on_demand: bool = True,
        measure_memory: bool = True,
    ) -> None:
        self.resolver = resolver
        self._blobs = blobs
        self._options = runtime_options
        self._load_on_demand = load_on_demand
        self._measure_memory = measure_memory
        # Key: servable.key for the default runtime with the server's options, else
        # servable.key + (runtime name, options as JSON): see `session_key`.
        self._loaded: dict[tuple[str, ...], LoadedModel] = {}
        self._lock = threading.Lock()
        self._load_locks: dict[tuple[str, ...], threading.Lock] = {}

    def resolve(self, name: str, version: str = "") -> Servable:
        return self.resolver.resolve(name, version)

    def is_ready(
        self, servable: Servable, runtime_name: str = "", options: dict[str, Any] | None = None
    ) -> bool:
        model = self._loaded.get(session_key(servable, runtime_name, options))
        return model is not None and not model.draining

    def is_loaded(self, name: str, version: int | str = 0) -> bool:
        """Whether `name` (a model, or a variant's serving name) has a loaded session;
        version 0/"" means any version of the model."""
        version = "" if version in (0, "") else str(version)
        with self._lock:
            keys = list(self._loaded)
        return any(self._matches(key, name, version) for key in keys)

    def _matches(self, key: tuple[str, ...], name: str, version: str) -> bool:
        if key[:2] == (name, version) or (key[0] == name and not version):
            return True
        return f"{key[0]}.{key[1]}" == name

    @contextmanager
    def acquire(self, name: str, version: str = "") -> Iterator[LoadedModel]:
        """A loaded model held for one request; unload waits until it is released."""
        with self.acquire_servable(self.resolve(name, version)) as model:
            yield model

    @contextmanager
    def acquire_servable(
        self, servable: Servable, runtime_name: str = "", options: dict[str, Any] | None = None
    ) -> Iterator[LoadedModel]:
        """`acquire` for a resolved servable, optionally on a named runtime with its own
        options (deployments); one session per (servable, runtime, options)."""
        model = self._acquire(servable, runtime_name, options)
        try:
            yield model
        finally:
            with model.idle:
                model.in_flight -= 1
                model.idle.notify_all()

    def _acquire(
        self, servable: Servable, runtime_name: str = "", options: dict[str, Any] | None = None
    ) -> LoadedModel:
        model = self._loaded.get(session_key(servable, runtime_name, options))
        if model is None:
            if not self._load_on_demand:
                raise FailedPrecondition(
                    f"model {servable.model!r} version {servable.version} is not loaded; load "
                    "it first (RepositoryModelLoad, or tritonclient load_model)"
                )
            model = self.load(servable, runtime_name, options)
        with model.idle:
            if model.draining:
                raise FailedPrecondition(f"model {servable.model!r} is being unloaded")
            model.in_flight += 1
        return model

    def load(
        self, servable: Servable, runtime_name: str = "", options: dict[str, Any] | None = None
    ) -> LoadedModel:
        key = session_key(servable, runtime_name, options)
        with self._lock:
            load_lock = self._load_locks.setdefault(key, threading.Lock())
        with load_lock:
            if key in self._loaded:
                return self._loaded[key]
            model = self._load(servable, runtime_name, options)
            with self._lock:
                self._loaded[key] = model
        return model

    def _load(
        self, servable: Servable, runtime_name: str = "", options: dict[str, Any] | None = None
    ) -> LoadedModel:
        runtime = named_runtime(runtime_name, servable.format)
        options = self._options if options is None else options
        path = self._model_path(servable)
        # issue 7 (runtimes): complete the runtime's options and build or reuse its cached
        # artifact (TensorRT engine, int8 .tflite) before loading: service/runtime_prep.py.
        from service.serving import prepare as runtime_prep

        path, options = runtime_prep.prepare(runtime, servable, path, options, self._blobs.root)
        started = time.perf_counter()
        session = runtime.load(path, options)
        model = LoadedModel(servable, runtime, session, path, options)
        labels = model.labels
        metrics.MODEL_LOAD_DURATION.labels(*labels).observe(time.perf_counter() - started)
        metrics.MODEL_SIZE.labels(*labels).set(servable.size_bytes)
        metrics.MODEL_LOADED.labels(*labels).set(1)
        if self._measure_memory:
            threading.Thread(target=self._measure, args=(model,), daemon=True).start()
        log.info("loaded %s version %s on %s", servable.model, servable.version, runtime.name)
        return model

    def _model_path(self, servable: Servable) -> Path:
        if servable.format == FORMAT_ONNX_BUNDLE:
            return find_onnx(self._blobs.unpacked_dir(servable.sha256))
        return self._blobs.path(servable.sha256)

    def _measure(self, model: LoadedModel) -> None:
        """Memory is measured in a child process: sessions in one process are not separable."""
        from runtimes.memory_probe import measure_model_memory

        try:
            result = measure_model_memory(model.runtime.name, model.model_path, model.options)
        except Exception:
            log.exception("memory probe failed for %s", model.labels)
            return
        if not model.draining:
            metrics.MODEL_MEMORY.labels(*model.labels).set(result.model_memory_bytes)

    def unload(self, name: str, version: str = "", timeout_s: float = 30.0) -> int:
        """Unload the matching sessions (every version and variant of a model when no
        version is given), draining in-flight requests first. Returns how many."""
        with self._lock:
            keys = [k for k in self._loaded if self._matches(k, name, version)]
        for key in keys:
            self._drain_and_close(self._loaded[key], timeout_s)
            with self._lock:
                self._loaded.pop(key, None)
        return len(keys)

    def _drain_and_close(self, model: LoadedModel, timeout_s: float) -> None:
        with model.idle:
            model.draining = True
            model.idle.wait_for(lambda: model.in_flight == 0, timeout=timeout_s)
        model.session.close()
        for metric in (metrics.MODEL_LOADED, metrics.MODEL_MEMORY, metrics.MODEL_SIZE):
            with suppress(KeyError):  # the memory probe may not have reported yet
                metric.remove(*model.labels)
        log.info("unloaded %s version %s", model.servable.model, model.servable.version)

    def unload_session(
        self,
        servable: Servable,
        runtime_name: str = "",
        options: dict[str, Any] | None = None,
        timeout_s: float = 30.0,
    ) -> bool:
        """Drain and close the one session of (servable, runtime, options), if loaded."""
        key = session_key(servable, runtime_name, options)
        model = self._loaded.get(key)
        if model is None:
            return False
        self._drain_and_close(model, timeout_s)
        with self._lock:
            self._loaded.pop(key, None)
        return True

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return list(self._loaded.values())

    def close(self) -> None:
        for model in self.loaded():
            self._drain_and_close(model, timeout_s=5.0)
        self._loaded.clear()


def session_key(
    servable: Servable, runtime_name: str = "", options: dict[str, Any] | None = None
) -> tuple[str, ...]:
    """Sessions are shared per (servable, runtime, options); the default runtime with the
    server's options keeps the plain servable key."""
    if not runtime_name and options is None:
        return servable.key
    return (*servable.key, runtime_name, json.dumps(options, sort_keys=True))


def named_runtime(name: str, fmt: str) -> Runtime:
    """The runtime called `name` (the default one for `fmt` when empty). A named runtime
    that is unavailable here or cannot load `fmt` is FailedPrecondition, never replaced."""
    if not name:
        return registry.runtime_for_format(fmt)
    runtime = registry.get_runtime(name)  # InvalidArgument for unknown names
    missing = runtime.available()
    if missing is not None:
        raise FailedPrecondition(f"runtime {name!r} is not available on this host: {missing}")
    if fmt not in runtime.formats:
        raise FailedPrecondition(
            f"runtime {name!r} cannot serve model format {fmt!r} (it serves "
            f"{sorted(runtime.formats)})"
        )
    return runtime
