"""Loaded runtime sessions: load once per model version, share, drain before unloading."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtimes import registry
from runtimes.base import Runtime, Session, Signature
from service import metrics
from service.errors import FailedPrecondition, InvalidArgument
from service.store.blobs import BlobStore
from service.store.bundles import find_onnx
from service.store.repository import FORMAT_ONNX_BUNDLE, ModelRecord, ModelRepository

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    record: ModelRecord
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
        return (self.record.name, f"v{self.record.version}", self.runtime.name)

    @property
    def signature(self) -> Signature:
        return self.record.signature


def parse_version(text: str) -> int:
    """KServe `model_version`: "" means latest (0), else a positive integer."""
    if not text:
        return 0
    if not text.isdigit() or int(text) < 1:
        raise InvalidArgument(f"model_version must be empty or a positive integer, got {text!r}")
    return int(text)


class SessionManager:
    """Owns every loaded session. Thread-safe; a model is loaded at most once."""

    def __init__(
        self,
        repo: ModelRepository,
        blobs: BlobStore,
        runtime_options: dict[str, Any],
        load_on_demand: bool = True,
        measure_memory: bool = True,
    ) -> None:
        self._repo = repo
        self._blobs = blobs
        self._options = runtime_options
        self._load_on_demand = load_on_demand
        self._measure_memory = measure_memory
        self._loaded: dict[tuple[str, int], LoadedModel] = {}
        self._lock = threading.Lock()
        self._load_locks: dict[tuple[str, int], threading.Lock] = {}

    def resolve(self, name: str, version: int = 0) -> ModelRecord:
        """The stored record for name/version (0 = latest); NotFound if absent."""
        return self._repo.get_model(name, version)

    def list_models(self) -> list[ModelRecord]:
        return self._repo.list_models()

    def find_loaded(self, name: str, version: int = 0) -> LoadedModel | None:
        if version:
            return self._loaded.get((name, version))
        loaded = [m for (n, _), m in self._loaded.items() if n == name]
        if not loaded:
            return None
        newest = max(loaded, key=lambda m: m.record.version)
        latest = self._repo.get_model(name).version
        return newest if newest.record.version == latest else None

    def is_ready(self, name: str, version: int = 0) -> bool:
        model = self.find_loaded(name, version)
        return model is not None and not model.draining

    @contextmanager
    def acquire(self, name: str, version: int = 0) -> Iterator[LoadedModel]:
        """A loaded model held for one request; unload waits until it is released."""
        model = self._acquire(name, version)
        try:
            yield model
        finally:
            with model.idle:
                model.in_flight -= 1
                model.idle.notify_all()

    def _acquire(self, name: str, version: int) -> LoadedModel:
        model = self.find_loaded(name, version)
        if model is None:
            if not self._load_on_demand:
                raise FailedPrecondition(
                    f"model {name!r} is not loaded; load it first (repository extension "
                    "RepositoryModelLoad, or tritonclient load_model)"
                )
            model = self.load(name, version)
        with model.idle:
            if model.draining:
                raise FailedPrecondition(f"model {name!r} is being unloaded")
            model.in_flight += 1
        return model

    def load(self, name: str, version: int = 0) -> LoadedModel:
        record = self._repo.get_model(name, version)
        key = (record.name, record.version)
        with self._lock:
            load_lock = self._load_locks.setdefault(key, threading.Lock())
        with load_lock:
            if key in self._loaded:
                return self._loaded[key]
            model = self._load_record(record)
            with self._lock:
                self._loaded[key] = model
        return model

    def _load_record(self, record: ModelRecord) -> LoadedModel:
        runtime = registry.runtime_for_format(record.format)
        path = self._model_path(record)
        started = time.perf_counter()
        session = runtime.load(path, self._options)
        model = LoadedModel(record, runtime, session, path, self._options)
        labels = model.labels
        metrics.MODEL_LOAD_DURATION.labels(*labels).observe(time.perf_counter() - started)
        metrics.MODEL_SIZE.labels(*labels).set(record.size_bytes)
        metrics.MODEL_LOADED.labels(*labels).set(1)
        if self._measure_memory:
            threading.Thread(target=self._measure, args=(model,), daemon=True).start()
        log.info("loaded %s v%d on %s", record.name, record.version, runtime.name)
        return model

    def _model_path(self, record: ModelRecord) -> Path:
        if record.format == FORMAT_ONNX_BUNDLE:
            return find_onnx(self._blobs.unpacked_dir(record.sha256))
        return self._blobs.path(record.sha256)

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

    def unload(self, name: str, version: int = 0, timeout_s: float = 30.0) -> int:
        """Unload one version (or every version when 0), draining in-flight requests first.
        Returns how many sessions were unloaded."""
        with self._lock:
            keys = [k for k in self._loaded if k[0] == name and version in (0, k[1])]
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
        log.info("unloaded %s v%d", model.record.name, model.record.version)

    def is_loaded(self, name: str, version: int = 0) -> bool:
        return any(n == name and version in (0, v) for n, v in self._loaded)

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return list(self._loaded.values())

    def close(self) -> None:
        for model in self.loaded():
            self._drain_and_close(model, timeout_s=5.0)
        self._loaded.clear()
