"""Loaded runtime sessions: load once per target, warm up, batch, share, drain before
unloading; and whether a target would serve now (readiness)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from pareto_core.errors import FailedPrecondition, ParetoError
from pareto_core.formats import FORMAT_ONNX_BUNDLE
from runtimes import registry
from runtimes.base import Runtime
from runtimes.options import host_cpus
from service import metrics
from service.serving.batcher import Batcher
from service.serving.config import DEFAULT, ServingConfig
from service.serving.loaded_model import LoadedModel, warm_up
from service.serving.prepare import RuntimePreparer, publish_runtime
from service.serving.servables import Servable, ServableResolver
from service.serving.statistics import Statistics
from service.serving.targets import Target
from service.store.blobs import BlobStore
from service.store.bundles import find_onnx

log = logging.getLogger(__name__)


class SessionManager:
    """Owns every loaded session. Thread-safe; a target is loaded at most once."""

    def __init__(
        self,
        resolver: ServableResolver,
        blobs: BlobStore,
        preparer: RuntimePreparer,
        load_on_demand: bool = True,
        measure_memory: bool = True,
        config_of: Callable[[str], ServingConfig] = lambda model: DEFAULT,
    ) -> None:
        self.resolver = resolver
        self._blobs = blobs
        self._preparer = preparer
        self._load_on_demand = load_on_demand
        self._measure_memory = measure_memory
        self.config_of = config_of  # a model's serving config, by name
        self.statistics = Statistics()
        self._loaded: dict[tuple[str, ...], LoadedModel] = {}
        self._failures: dict[tuple[str, ...], str] = {}  # the last load error, per target
        self._lock = threading.Lock()
        self._load_locks: dict[tuple[str, ...], threading.Lock] = {}

    def resolve(self, name: str, version: str = "") -> Servable:
        return self.resolver.resolve(name, version)

    def is_ready(self, target: Target) -> bool:
        model = self._loaded.get(target.key)
        return model is not None and not model.draining

    def readiness(self, target: Target) -> tuple[bool, str]:
        """Whether a request for `target` would be served now, and if not, why. A target
        not loaded yet is ready when it loads on first use and nothing says it cannot:
        its runtime is available here and its last load did not fail."""
        model = self._loaded.get(target.key)
        if model is not None:
            return (False, "being unloaded") if model.draining else (True, "")
        if not self._load_on_demand:
            return False, "not loaded (load it with RepositoryModelLoad)"
        failure = self._failures.get(target.key)
        if failure:
            return False, f"its last load failed: {failure}"
        try:
            named_runtime(target.runtime, target.servable.format)
        except ParetoError as exc:
            return False, str(exc)
        return True, ""

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
    def acquire(self, target: Target) -> Iterator[LoadedModel]:
        """The target's loaded model, held for one request; unloading waits for it."""
        model = self._loaded.get(target.key)
        if model is None:
            if not self._load_on_demand:
                raise FailedPrecondition(
                    f"model {target.servable.model!r} version {target.servable.version} is not "
                    "loaded; load it first (RepositoryModelLoad, or tritonclient load_model)"
                )
            model = self.load(target)
        with model.idle:
            if model.draining:
                raise FailedPrecondition(f"model {target.servable.model!r} is being unloaded")
            model.in_flight += 1
        try:
            yield model
        finally:
            with model.idle:
                model.in_flight -= 1
                model.idle.notify_all()

    def load(self, target: Target) -> LoadedModel:
        key = target.key
        with self._lock:
            load_lock = self._load_locks.setdefault(key, threading.Lock())
        with load_lock:
            if key in self._loaded:
                return self._loaded[key]
            try:
                model = self._load(target)
            except ParetoError as exc:
                self._failures[key] = str(exc)
                raise
            with self._lock:
                self._loaded[key] = model
                self._failures.pop(key, None)
        return model

    def _load(self, target: Target) -> LoadedModel:
        servable = target.servable
        runtime = named_runtime(target.runtime, servable.format)
        path, options = self._preparer.prepare(
            runtime,
            servable.sha256,
            self._model_path(servable),
            target.options,
            target.served_name,
            servable.signature,
        )
        publish_runtime(runtime)
        started = time.perf_counter()
        text_encoder = self._text_encoder(servable)
        session = runtime.load(path, options)
        config = self.config_of(servable.model)
        try:
            warm_up(session, config.warmup)
        except ParetoError as exc:
            session.close()
            raise type(exc)(f"warm-up of {target.served_name!r} failed: {exc}") from None
        model = LoadedModel(target, runtime, session, path, options, config)
        model.text_encoder = text_encoder
        model.on_run = self._run_recorder(model)
        model.batcher = self._batcher(model)
        labels = model.labels
        metrics.MODEL_LOAD_DURATION.labels(*labels).observe(time.perf_counter() - started)
        metrics.MODEL_SIZE.labels(*labels).set(servable.size_bytes)
        metrics.MODEL_LOADED.labels(*labels).set(1)
        if self._measure_memory:
            threading.Thread(target=self._measure, args=(model,), daemon=True).start()
        log.info("loaded %s version %s on %s", servable.model, servable.version, runtime.name)
        return model

    def _run_recorder(self, model: LoadedModel) -> Callable[[int, float, float, float], None]:
        """What each run of `model` reports: batch size, Triton statistics."""
        batch_size, key = model.meters.batch_size, model.servable.key

        def record(rows: int, prepare_s: float, run_s: float, split_s: float) -> None:
            batch_size.observe(rows)
            self.statistics.ran(key, rows, prepare_s, run_s, split_s)

        return record

    def _batcher(self, model: LoadedModel) -> Batcher | None:
        if not model.config.batching_on(model.signature):
            return None
        name = f"batch-{model.servable.model}"
        batching = model.config.batching
        instances = batching.instances or host_cpus()
        return Batcher(model.session, batching, model.on_run, name, instances)

    def reconfigure(self, model_name: str) -> None:
        """Apply model `model_name`'s serving config (batching) to its loaded sessions
        now; requests already queued finish on the old batcher."""
        config = self.config_of(model_name)
        for model in self.loaded():
            if model.servable.model != model_name or model.config == config:
                continue
            old, model.config = model.batcher, config
            model.batcher = self._batcher(model)
            if old is not None:
                old.close()

    def _text_encoder(self, servable: Servable) -> Any:
        """The model's tokenizer (tokenizer.json read from its stored source folder), when
        it takes text; only the `tokenizers` library is imported (no torch)."""
        if servable.text is None:
            return None
        from runtimes.hf.archive import read_member
        from runtimes.hf.folder import MAX_LARGE_JSON_BYTES, TOKENIZER
        from runtimes.hf.text import TextEncoder, TextSettings

        source_sha256, settings = servable.text
        data = read_member(self._blobs.path(source_sha256), TOKENIZER, MAX_LARGE_JSON_BYTES)
        return TextEncoder(data.decode("utf-8"), TextSettings.from_json(settings))

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

    def unload_target(self, target: Target, timeout_s: float = 30.0) -> bool:
        """Drain and close the one session of `target`, if loaded."""
        model = self._loaded.get(target.key)
        if model is None:
            return False
        self._drain_and_close(model, timeout_s)
        with self._lock:
            self._loaded.pop(target.key, None)
        return True

    def _drain_and_close(self, model: LoadedModel, timeout_s: float) -> None:
        with model.idle:
            model.draining = True
            model.idle.wait_for(lambda: model.in_flight == 0, timeout=timeout_s)
        if model.batcher is not None:
            model.batcher.close()
        model.session.close()
        for metric in (metrics.MODEL_LOADED, metrics.MODEL_MEMORY, metrics.MODEL_SIZE):
            with suppress(KeyError):  # the memory probe may not have reported yet
                metric.remove(*model.labels)
        log.info("unloaded %s version %s", model.servable.model, model.servable.version)

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return list(self._loaded.values())

    def close(self) -> None:
        for model in self.loaded():
            self._drain_and_close(model, timeout_s=5.0)
        self._loaded.clear()


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
