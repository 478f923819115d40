"""Content-addressed outputs of recipe steps, so a search never computes a prefix twice.

A step's output is determined by its input, the technique, its canonical config, the
datasets it may read and the seed: the key is the sha256 of those, where the input is the
parent's sha256 for a first step and the previous step's key after it. Trials whose
chains share a prefix (prune 50% then quantize one way, then another) run the prefix once;
a later search of the same model with the same datasets reuses it too.

Layout under `root` (``<data dir>/search-cache``):

    <key>/model.<ext>   the step's output, with `entry.json` (format, signature, report)
    <key>/torch-source/ the output's torch source, when it has one (prune.transformer's
                        pruned Hugging Face folder: a training step may follow it)
    tmp/                entries being written (garbage after a crash; removed on start)

An entry appears only through the atomic rename of a finished directory, so a reader sees
all of it or nothing; trials running at once (in processes, on Ray nodes sharing the data
dir) read, add and evict entries concurrently. The cache is bounded (least recently used
entries are evicted past `max_bytes`) and safe to delete at any time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from compressors.base import Artifact, TorchSource
from pareto_core.tensors import Signature, TensorSpec

ENTRY = "entry.json"
TORCH_SOURCE = "torch-source"
DEFAULT_MAX_BYTES = 2 * 1024**3


def step_key(
    input_key: str, technique: str, config: dict[str, Any], datasets_key: str, seed: int
) -> str:
    payload = json.dumps(
        {
            "input": input_key,
            "technique": technique,
            "config": config,
            "datasets": datasets_key,
            "seed": seed,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _signature_to_data(signature: Signature) -> dict[str, Any]:
    return {
        "inputs": [t.to_json() for t in signature.inputs],
        "outputs": [t.to_json() for t in signature.outputs],
    }


def _signature_from_data(data: dict[str, Any]) -> Signature:
    return Signature(
        tuple(TensorSpec.from_json(t) for t in data["inputs"]),
        tuple(TensorSpec.from_json(t) for t in data["outputs"]),
    )


class StepCache:
    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> tuple[Artifact, dict[str, Any]] | None:
        """(the cached output, the step's report), or None."""
        entry = self.root / key
        try:
            data = json.loads((entry / ENTRY).read_text())
        except (OSError, ValueError):
            return None
        path = entry / data["file"]
        try:
            os.utime(entry)  # recently used: evicted last
        except OSError:  # evicted by another process meanwhile
            return None
        if not path.is_file():
            return None
        source = None
        if "torch_source_task" in data:
            source = TorchSource(entry / TORCH_SOURCE, data["torch_source_task"])
        signature = _signature_from_data(data["signature"])
        return Artifact(path, data["format"], signature, source), data["report"]

    def put(self, key: str, artifact: Artifact, report: dict[str, Any]) -> Artifact:
        """Copy the step's output in (the work dir it came from may be deleted); returns
        the cached artifact."""
        found = self.get(key)
        if found is not None:
            return found[0]
        staging = self._tmp / uuid.uuid4().hex
        staging.mkdir()
        name = "model" + Path(artifact.path).suffix
        shutil.copyfile(artifact.path, staging / name)
        data = {
            "file": name,
            "format": artifact.format,
            "signature": _signature_to_data(artifact.signature),
            "report": report,
        }
        if artifact.torch_source is not None:
            shutil.copytree(artifact.torch_source.path, staging / TORCH_SOURCE)
            data["torch_source_task"] = artifact.torch_source.task
        (staging / ENTRY).write_text(json.dumps(data, sort_keys=True))
        try:
            os.rename(staging, self.root / key)
        except OSError:  # another writer got there first: theirs is the same content
            shutil.rmtree(staging, ignore_errors=True)
        self.evict()
        cached = self.get(key)
        if cached is None:  # evicted at once: larger than the whole cache
            return artifact
        return cached[0]

    def clean_tmp(self) -> None:
        for leftover in self._tmp.iterdir():
            shutil.rmtree(leftover, ignore_errors=True)

    def evict(self) -> None:
        """Remove the least recently used entries until the cache fits in max_bytes."""
        entries = []
        for entry in self.root.iterdir():
            if entry == self._tmp or not entry.is_dir():
                continue
            try:
                size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
                entries.append((entry.stat().st_mtime, size, entry))
            except OSError:  # another process evicted it meanwhile
                continue
        total = sum(size for _, size, _ in entries)
        for _, size, entry in sorted(entries):
            if total <= self.max_bytes:
                break
            shutil.rmtree(entry, ignore_errors=True)
            total -= size
