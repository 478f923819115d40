"""The artifact cache: build once per key, reuse after, rebuild when a key part changes,
never show half a build, count hits and misses, time builds."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from pareto_core.errors import FailedPrecondition
from runtimes.artifacts import ArtifactCache, cache_key
from runtimes.base import RuntimeDescription
from runtimes.onnxruntime_cpu import OnnxRuntimeCpu
from service import metrics

EVENTS = metrics.ARTIFACT_CACHE_EVENTS

SHA = "ab" * 32


class CopyBuildRuntime(OnnxRuntimeCpu):
    """ONNX Runtime with a build step that copies the model (a real file operation), so the
    cache can be tested without a converter or a GPU."""

    name = "copy_build_test"

    def __init__(self, version: str = "1", fail: bool = False) -> None:
        self.version, self.fail, self.builds = version, fail, 0

    def build_key_parts(self, options: dict[str, Any] | None = None) -> dict[str, str]:
        return {"version": self.version, "options": repr(sorted((options or {}).items()))}

    def build(self, model_path: Path, out_dir: Path, options: dict[str, Any] | None) -> Path:
        self.builds += 1
        shutil.copy(model_path, out_dir / "built.onnx")
        if self.fail:
            raise RuntimeError("converter crashed")
        return out_dir / "built.onnx"

    def describe(self) -> RuntimeDescription:
        return RuntimeDescription(self.name, self.version, "cpu", False)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"model bytes")
    return path


def _counts(name: str) -> tuple[float, float, float]:
    hits = metrics.RUNTIME_CACHE_HITS.labels(name)._value.get()
    misses = metrics.RUNTIME_CACHE_MISSES.labels(name)._value.get()
    builds = metrics.RUNTIME_BUILD_DURATION.labels(name)._sum.get()
    return hits, misses, builds


def test_build_once_then_hit(tmp_path, model):
    cache, runtime = ArtifactCache(tmp_path / "artifacts", EVENTS), CopyBuildRuntime()
    hits, misses, _ = _counts(runtime.name)
    first = cache.prepare(runtime, SHA, model)
    assert cache.prepare(runtime, SHA, model) == first and runtime.builds == 1
    assert first.read_bytes() == b"model bytes"
    assert first.parent.name == cache_key(SHA, runtime.name, runtime.build_key_parts())
    assert cache.manifest(first)["model_sha256"] == SHA
    assert _counts(runtime.name)[:2] == (hits + 1, misses + 1)
    # a new cache object on the same directory (a restart) reuses the build
    assert ArtifactCache(tmp_path / "artifacts", EVENTS).prepare(runtime, SHA, model) == first


def test_new_version_or_options_rebuild(tmp_path, model):
    cache = ArtifactCache(tmp_path / "artifacts", EVENTS)
    first = cache.prepare(CopyBuildRuntime("1"), SHA, model)
    assert cache.prepare(CopyBuildRuntime("2"), SHA, model) != first
    assert cache.prepare(CopyBuildRuntime("1"), SHA, model, {"fp16": True}) != first
    assert cache.prepare(CopyBuildRuntime("1"), "cd" * 32, model) != first


def test_failed_build_leaves_nothing(tmp_path, model):
    cache = ArtifactCache(tmp_path / "artifacts", EVENTS)
    with pytest.raises(FailedPrecondition, match=r"could not build.*converter crashed"):
        cache.prepare(CopyBuildRuntime(fail=True), SHA, model)
    assert sorted(p.name for p in (tmp_path / "artifacts").iterdir()) == ["tmp"]
    assert list((tmp_path / "artifacts" / "tmp").iterdir()) == []


def test_concurrent_prepares_build_once(tmp_path, model):
    cache, runtime = ArtifactCache(tmp_path / "artifacts", EVENTS), CopyBuildRuntime()
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.prepare(runtime, SHA, model)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert runtime.builds == 1 and len(set(results)) == 1


def test_runtimes_without_a_build_step_load_the_stored_file(tmp_path, model):
    assert ArtifactCache(tmp_path / "a", EVENTS).prepare(OnnxRuntimeCpu(), SHA, model) == model
