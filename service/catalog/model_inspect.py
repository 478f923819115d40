"""Validate an uploaded model file and read its signature, before it becomes visible.

- onnx: a single self-contained ONNX file, checked with `onnx.checker` by path.
- onnx_bundle: an archive holding one .onnx plus its external-data files; extracted with
  the safe extractor, every external-data location confined to the bundle.
- torch_export: a torch.export .pt2 archive; never unpickled. A torch-free structural check
  runs here, then `runtimes.pt2_inspect` loads it in a subprocess (torch stays out of the
  server process and a crash or hang there cannot take the server down).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

from pareto_core.errors import InvalidArgument
from pareto_core.formats import FORMAT_ONNX, FORMAT_ONNX_BUNDLE, FORMAT_TORCH_EXPORT, STORED_FORMATS
from pareto_core.onnx_signature import onnx_signature
from pareto_core.tensors import Signature, TensorSpec
from runtimes import helper_process, pt2_inspect
from service.store.bundles import find_onnx, safe_extract

PT2_INSPECT_TIMEOUT_S = 120
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


def inspect_model(path: Path, fmt: str, work_dir: Path, max_unpacked_bytes: int) -> Signature:
    """Check the model file at `path` is a valid model of format `fmt` and return its
    signature. `work_dir` is scratch space the caller creates or not, and removes."""
    if fmt == FORMAT_ONNX:
        return _inspect_onnx(path, bundle_root=None)
    if fmt == FORMAT_ONNX_BUNDLE:
        work_dir.mkdir(parents=True, exist_ok=True)
        safe_extract(path, work_dir, max_unpacked_bytes)
        return _inspect_onnx(find_onnx(work_dir), bundle_root=work_dir)
    if fmt == FORMAT_TORCH_EXPORT:
        return _inspect_pt2(path, work_dir, max_unpacked_bytes)
    raise InvalidArgument(f"format {fmt!r} is not supported; accepted: {', '.join(STORED_FORMATS)}")


# -- ONNX --------------------------------------------------------------------------------


def _inspect_onnx(path: Path, bundle_root: Path | None) -> Signature:
    import onnx

    what = "uploaded file" if bundle_root is None else f"bundle member {_rel(path, bundle_root)!r}"
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise InvalidArgument(f"{what} is not a valid ONNX model: {_reason(e)}") from e
    _check_external_data(model, path.parent, bundle_root)
    try:
        onnx.checker.check_model(str(path), full_check=False)
    except Exception as e:
        raise InvalidArgument(f"{what} is not a valid ONNX model: {_reason(e)}") from e
    return onnx_signature(model)


def _check_external_data(model: Any, base_dir: Path, bundle_root: Path | None) -> None:
    """External data must be a relative path to a regular file inside the bundle."""
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        info = ExternalDataInfo(tensor)
        where = f"tensor {tensor.name!r} stores its data in {info.location!r}"
        if bundle_root is None:
            raise InvalidArgument(
                f"{where}: a plain onnx upload must be self-contained; upload the model "
                "and its data files as an onnx_bundle archive"
            )
        _check_location(info, base_dir, bundle_root, where)


def _check_location(info: Any, base_dir: Path, bundle_root: Path, where: str) -> None:
    loc = PurePosixPath(info.location)
    if not info.location or loc.is_absolute() or "\\" in info.location or ":" in info.location:
        raise InvalidArgument(f"{where}, which is not a relative path inside the bundle")
    if ".." in loc.parts:
        raise InvalidArgument(f"{where}, which has a '..' component")
    target = base_dir / loc
    if target.is_symlink() or not target.is_file():
        raise InvalidArgument(f"{where}, which is not a file in the bundle")
    if not target.resolve().is_relative_to(bundle_root.resolve()):
        raise InvalidArgument(f"{where}, which resolves outside the bundle")
    size = target.stat().st_size
    end = (info.offset or 0) + (info.length or 0)
    if end > size:
        raise InvalidArgument(f"{where} up to byte {end}, but that file has {size} bytes")


def _rel(path: Path, root: Path) -> str:
    return str(path.relative_to(root))


def _reason(e: Exception) -> str:
    text = str(e).strip() or type(e).__name__
    return text if len(text) <= 500 else text[:500] + "..."


# -- torch.export ------------------------------------------------------------------------


def _inspect_pt2(path: Path, work_dir: Path, max_unpacked_bytes: int) -> Signature:
    try:
        pt2_inspect.check_archive(path, max_unpacked_bytes)
    except pt2_inspect.ArchiveRejected as e:
        raise InvalidArgument(
            f"uploaded file is not an acceptable torch.export archive: {e}"
        ) from e
    work_dir.mkdir(parents=True, exist_ok=True)
    result = _run_pt2_inspector(path, work_dir, max_unpacked_bytes)
    if "error" in result:
        raise InvalidArgument(
            f"uploaded file is not an acceptable torch.export archive: {result['error']}"
        )
    try:
        inputs = tuple(TensorSpec.from_json(t) for t in result["inputs"])
        outputs = tuple(TensorSpec.from_json(t) for t in result["outputs"])
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidArgument(f"torch.export inspector gave an unreadable answer: {e}") from e
    return Signature(inputs, outputs)


def _run_pt2_inspector(path: Path, work_dir: Path, max_unpacked_bytes: int) -> dict[str, Any]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(_PROJECT_ROOT),
        "PYTHONNOUSERSITE": "1",
        "HOME": str(work_dir),
        "TMPDIR": str(work_dir),
        "OMP_NUM_THREADS": "1",
        "LANG": "C.UTF-8",
    }
    args = [str(path), str(max_unpacked_bytes)]
    try:
        proc = helper_process.run_module(
            "runtimes.pt2_inspect",
            args,
            timeout_s=PT2_INSPECT_TIMEOUT_S,
            env=env,
            cwd=_PROJECT_ROOT,
        )
    except subprocess.TimeoutExpired as e:
        raise InvalidArgument(
            f"inspecting the torch.export archive took over {PT2_INSPECT_TIMEOUT_S} s"
        ) from e
    lines = proc.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        result = json.loads(lines[-1])
        if isinstance(result, dict):
            return result
    except (IndexError, ValueError):
        pass
    tail = proc.stderr.decode("utf-8", "replace").strip()[-500:]
    return {"error": f"the inspector exited with status {proc.returncode}: {tail}"}
