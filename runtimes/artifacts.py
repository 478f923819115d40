"""The artifact cache: what a runtime builds from a stored model (a TensorRT engine, an
int8 .tflite) is built once and kept in the store, keyed by everything it depends on.

Layout under `root` (``<data dir>/artifacts``):

    <key>/          one finished build: the runtime's files plus `artifact.json`
    tmp/            builds in progress (garbage after a crash; removed on start)

The key is the sha256 of the model's sha256, the runtime name and what the runtime says
the build depends on (`Runtime.build_key_parts`: its version, the device such as the GPU
model, the build options). A new TensorRT version or another GPU gives a new key, so the
engine is rebuilt rather than reused. A build appears under its key only through an atomic
rename of a finished directory, so a reader never sees half an artifact. Concurrent
prepares of one key build once (a lock per key); different keys build in parallel.

What happens (hits, misses, build times) is reported to `CacheEvents`, which the process
that owns the metrics supplies.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pareto_core.errors import FailedPrecondition, ParetoError
from runtimes.base import Runtime

MANIFEST = "artifact.json"


def _ignore(*args: object) -> None:
    return None


@dataclass(frozen=True)
class CacheEvents:
    """Callbacks for what the cache does: (runtime, hit) per prepare that needs an
    artifact, (runtime, seconds) per finished build."""

    looked_up: Callable[[str, bool], None] = _ignore
    built: Callable[[str, float], None] = _ignore


def cache_key(model_sha256: str, runtime: str, parts: dict[str, str]) -> str:
    """sha256 over the model, the runtime and the sorted build parts (stable JSON)."""
    payload = json.dumps(
        {"model": model_sha256, "runtime": runtime, "parts": parts}, sort_keys=True
    ).encode()
    return hashlib.sha256(payload).hexdigest()


class ArtifactCache:
    def __init__(self, root: Path, events: CacheEvents | None = None) -> None:
        self.root = Path(root)
        self._events = events or CacheEvents()
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def clean_staging(self) -> None:
        for entry in self._tmp.iterdir():
            shutil.rmtree(entry, ignore_errors=True)

    def prepare(
        self,
        runtime: Runtime,
        model_sha256: str,
        model_path: Path,
        options: dict[str, Any] | None = None,
    ) -> Path:
        """The path `runtime.load` takes: `model_path` itself for runtimes without a build
        step, else the cached artifact, built now on a miss."""
        if not runtime.needs_build():
            return model_path
        missing = runtime.available()
        if missing is not None:
            raise FailedPrecondition(f"runtime {runtime.name!r} is not available: {missing}")
        parts = runtime.build_key_parts(options)
        key = cache_key(model_sha256, runtime.name, parts)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            found = self._lookup(key)
            self._events.looked_up(runtime.name, found is not None)
            if found is not None:
                return found
            return self._build(runtime, key, parts, model_sha256, model_path, options)

    def _lookup(self, key: str) -> Path | None:
        manifest = self.root / key / MANIFEST
        if not manifest.is_file():
            return None
        target = self.root / key / json.loads(manifest.read_text())["artifact"]
        return target if target.exists() else None

    def _build(
        self,
        runtime: Runtime,
        key: str,
        parts: dict[str, str],
        model_sha256: str,
        model_path: Path,
        options: dict[str, Any] | None,
    ) -> Path:
        scratch = self._tmp / uuid.uuid4().hex
        scratch.mkdir()
        started = time.perf_counter()
        try:
            built = Path(runtime.build(model_path, scratch, options))
            relative = built.relative_to(scratch)
            seconds = time.perf_counter() - started
            manifest = {
                "artifact": str(relative),
                "runtime": runtime.name,
                "model_sha256": model_sha256,
                "parts": parts,
                "build_seconds": seconds,
            }
            (scratch / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
            final = self.root / key
            if not final.exists():  # another process may have finished the same build
                os.rename(scratch, final)
        except ParetoError:
            raise
        except Exception as exc:
            raise FailedPrecondition(f"{runtime.name} could not build {model_path}: {exc}") from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        self._events.built(runtime.name, seconds)
        return final / relative

    def manifest(self, artifact: Path) -> dict[str, Any]:
        """The manifest of the artifact directory holding `artifact`."""
        for parent in Path(artifact).parents:
            if parent.parent == self.root and (parent / MANIFEST).is_file():
                found: dict[str, Any] = json.loads((parent / MANIFEST).read_text())
                return found
        raise FailedPrecondition(f"{artifact} is not an artifact in {self.root}")
