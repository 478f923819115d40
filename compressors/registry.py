"""Techniques registered by name; configs validated and (de)serialized as {type, version, data}.

Technique modules register themselves with `@register` when imported. `TECHNIQUE_MODULES`
lists them; they are imported on first use and must be cheap to import (no torch at import).
A process adds the modules of its user's own techniques with `add_modules`
(PARETO_EXTRA_TECHNIQUE_MODULES, read by the server and the job worker).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from compressors.base import Technique, TechniqueConfig
from pareto_core.errors import InvalidArgument

TECHNIQUE_MODULES: tuple[str, ...] = (
    "compressors.quantization.dynamic",
    "compressors.quantization.static",
    "compressors.quantization.accuracy_aware",
    "compressors.quantization.fp16",
    "compressors.quantization.weight_only",
    "compressors.pruning.magnitude",
    "compressors.pruning.structured",
    "compressors.low_rank.svd",
    "compressors.clustering.kmeans",
    "compressors.folding.batchnorm",
    "compressors.distillation.knowledge",
    "compressors.quantization.qat",
    "compressors.pruning.gradual",
    "compressors.pruning.transformer",
)

CONFIG_VERSION = 1

_techniques: dict[str, type[Technique]] = {}
_extra_modules: list[str] = []
_loaded = False
_lock = threading.Lock()


def register(cls: type[Technique]) -> type[Technique]:
    """Class decorator: make a technique available under `cls.name`."""
    if cls.name in _techniques and _techniques[cls.name] is not cls:
        raise ValueError(f"technique {cls.name!r} registered twice")
    _techniques[cls.name] = cls
    return cls


def _load_all() -> None:
    global _loaded
    with _lock:
        if _loaded:
            return
        for module in (*TECHNIQUE_MODULES, *_extra_modules):
            importlib.import_module(module)
        _loaded = True


def add_modules(modules: Iterable[str]) -> None:
    """Technique modules of the user's own, registered the same way as ours (imported now
    if the registry is already loaded, else with the others on first use)."""
    with _lock:
        new = [m for m in modules if m and m not in _extra_modules]
        _extra_modules.extend(new)
        loaded = _loaded
    for module in new if loaded else ():
        importlib.import_module(module)


def names() -> list[str]:
    _load_all()
    return sorted(_techniques)


def get(name: str) -> Technique:
    _load_all()
    if name not in _techniques:
        raise InvalidArgument(f"unknown technique {name!r}; known techniques: {names()}")
    return _techniques[name]()


def parse_config(name: str, data: dict[str, Any] | None, where: str = "config") -> TechniqueConfig:
    """Validate `data` for technique `name`; InvalidArgument names the offending field."""
    technique = get(name)
    try:
        return technique.config_cls.model_validate(data or {})
    except ValidationError as exc:
        problems = [
            f"{where}.{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise InvalidArgument(f"invalid config for {name}: " + "; ".join(problems)) from None


def config_to_json(name: str, config: TechniqueConfig) -> dict[str, Any]:
    return {"type": name, "version": CONFIG_VERSION, "data": config.model_dump(mode="json")}


def config_from_json(payload: dict[str, Any]) -> tuple[str, TechniqueConfig]:
    """Load back a serialized config; only registered types are accepted."""
    if payload.get("version") != CONFIG_VERSION:
        raise InvalidArgument(
            f"config version {payload.get('version')!r} not supported (expected {CONFIG_VERSION})"
        )
    name = payload.get("type", "")
    return name, parse_config(name, payload.get("data"))
