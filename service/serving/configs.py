"""Models' serving configs as the data plane reads them: from the store, cached briefly.

Read when a model loads (warm-up, batching) and checked again by the sessions of a model
whose config changed here (`SessionManager.reconfigure`); another replica's change is
seen within `cache_s`, at the model's next load.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pareto_core.errors import NotFound
from service.serving.config import DEFAULT, ServingConfig, check_against, parse
from service.store.interfaces import Repository


class ServingConfigs:
    def __init__(self, repo: Repository, cache_s: float = 1.0) -> None:
        self._repo = repo
        self._cache_s = cache_s
        self._cache: dict[str, tuple[ServingConfig, float, int]] = {}
        self._lock = threading.Lock()
        # Called with a model's name after its config changed here (the sessions apply it).
        self.changed: Callable[[str], None] = lambda model: None

    def put(self, model: str, config: ServingConfig) -> ServingConfig:
        """Store `config` for model `model` after checking it against every version."""
        versions = [r for r in self._repo.list_models() if r.name == model]
        if not versions:
            raise NotFound(f"model {model!r} not found")
        for record in versions:
            check_against(config, record.signature, f"{model} version {record.version}")
        self._repo.set_serving_config(model, config.model_dump(mode="json"))
        self.changed(model)
        return config

    def get(self, model: str) -> ServingConfig:
        """Model `model`'s config, or the defaults when it has none."""
        now, generation = time.monotonic(), self._repo.write_generation
        with self._lock:
            hit = self._cache.get(model)
        if hit is not None and hit[2] == generation and now - hit[1] < self._cache_s:
            return hit[0]
        stored = self._repo.get_serving_config(model)
        config = DEFAULT if stored is None else parse(stored)
        with self._lock:
            self._cache[model] = (config, now, generation)
        return config
