"""The upload of a Hugging Face folder (a .zip or .tar of one): checked in the server,
exported to ONNX in a bounded helper process, never run in the server.

    archive -> safe_extract (the bundle rules: no '..', absolute paths or links; the
    expansion cap) -> runtimes.hf.folder.check_folder (config, .safetensors headers, no
    pickle, JSON limits, tokenizer, task) -> the files Pareto reads packed into the stored
    folder (a tar) -> compressors.training.hf_export in a helper process (memory limit,
    lower priority, at most PARETO_MAX_HELPER_PROCESSES at once): ONNX export checked
    against torch -> the ONNX file checked like any upload (onnx.checker, declared sizes,
    one run on the serving runtime)

The result is two staged files (the ONNX file and the folder) and what the record says of
them; `uploads.Upload` commits both and only then writes the record.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pareto_core.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from pareto_core.formats import FORMAT_HF_FOLDER, FORMAT_ONNX
from pareto_core.tensors import Signature
from runtimes import helper_process, registry
from runtimes.hf.archive import pack_folder
from runtimes.hf.folder import Folder, check_folder, find_root
from runtimes.memory_probe import child_env
from runtimes.model_check import check_model
from service.catalog.model_inspect import inspect_model
from service.store.bundles import safe_extract
from service.store.records import ModelSource

EXPORT_TIMEOUT_S = 900
_EXPORT_MODULE = "compressors.training.hf_export"
_ERRORS = {"FAILED_PRECONDITION": FailedPrecondition}


@dataclass(frozen=True)
class HfExport:
    onnx: Path  # staged
    signature: Signature
    folder: Path  # staged: the stored folder (tar)
    source: ModelSource


def export_upload(
    archive: Path,
    work_dir: Path,
    task: str,
    new_staging: Callable[[], Path],
    limits: tuple[int, int],
) -> HfExport:
    """Check, store and export the folder in `archive`. `work_dir` is scratch space (the
    caller removes it); `new_staging` gives paths for the two files to commit, which the
    caller removes on failure; `limits`: (bytes the archive may unpack to,
    PARETO_MAX_TENSOR_ELEMENTS)."""
    unpack_limit, max_tensor_elements = limits
    unpacked = work_dir / "unpacked"
    unpacked.mkdir(parents=True)
    safe_extract(archive, unpacked, unpack_limit)
    folder = check_folder(find_root(unpacked), task)
    clean = _clean_copy(folder, work_dir / "folder")
    stored = new_staging()
    sha256, size = pack_folder(clean, folder.files, stored)
    onnx_file = new_staging()
    figures = _export(clean, onnx_file, folder.task, work_dir)
    signature = inspect_model(onnx_file, FORMAT_ONNX, work_dir / "inspect", unpack_limit)
    runtime = registry.runtime_for_format(FORMAT_ONNX).name
    check_model(runtime, onnx_file, max_tensor_elements, onnx=True)
    source = ModelSource(
        format=FORMAT_HF_FOLDER,
        sha256=sha256,
        size_bytes=size,
        task=folder.task,
        architecture=folder.architecture,
        export={k: v for k, v in figures.items() if k not in ("task", "architecture")},
        text=folder.text.to_json() if folder.text is not None else {},
    )
    return HfExport(onnx_file, signature, stored, source)


def _clean_copy(folder: Folder, dest: Path) -> Path:
    """A folder holding only the files Pareto reads (moved), so nothing else can be loaded
    by the export (a pickle file beside the safetensors, say)."""
    for name in folder.files:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(folder.root / name, dest / name)
    return dest


def _export(folder: Path, out: Path, task: str, work_dir: Path) -> dict[str, Any]:
    home = work_dir / "home"  # anything a library caches stays in the scratch space
    home.mkdir()
    env = child_env() | {
        "HF_HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "TMPDIR": str(home),
    }
    args = [str(folder), str(out), "--task", task]
    try:
        proc = helper_process.run_module(_EXPORT_MODULE, args, timeout_s=EXPORT_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        took = f"exporting the folder to ONNX took over {EXPORT_TIMEOUT_S} s"
        raise InvalidArgument(took) from None
    lines = [line for line in proc.stdout.decode("utf-8", "replace").splitlines() if line]
    try:
        answer: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = proc.stderr.decode("utf-8", "replace").strip()[-300:]
        raise ResourceExhausted(
            f"exporting the folder to ONNX failed (exit status {proc.returncode}) within "
            f"{helper_process.memory_limit()} bytes (PARETO_HELPER_MEMORY_BYTES): {tail}"
        ) from None
    if "error" in answer:
        raise _ERRORS.get(str(answer.get("code")), InvalidArgument)(str(answer["error"]))
    return answer
