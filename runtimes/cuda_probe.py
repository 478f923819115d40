"""What a host lacks for CUDA inference with torch, found without importing torch.

torch's build is read from torch/version.py (unless torch is already imported) and CUDA
devices are counted through the NVIDIA driver (libcuda), so the server can report why
`torch_cuda` is unavailable without paying for a torch import.
"""

from __future__ import annotations

import ast
import ctypes
import importlib.util
import sys
from pathlib import Path

NO_TORCH = "torch is not installed"
CPU_BUILD = "torch has no CUDA support (CPU build)"
NO_DEVICE = "no CUDA device"


def _torch_cuda_version() -> str | bool | None:
    """torch.version.cuda; False when torch is not installed. Read from torch/version.py
    unless torch is already imported."""
    torch = sys.modules.get("torch")
    if torch is not None:
        cuda: str | None = torch.version.cuda
        return cuda
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    for folder in spec.submodule_search_locations:
        version_file = Path(folder) / "version.py"
        if version_file.is_file():
            return _assigned(version_file.read_text(), "cuda")
    return None


def _assigned(source: str, name: str) -> str | None:
    """The string constant assigned to `name` at module level in `source`, else None."""
    for node in ast.parse(source).body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and target.id == name:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                return value.value
            return None
    return None


def _cuda_device_count() -> int:
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0  # no NVIDIA driver
    count = ctypes.c_int(0)
    if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


def missing_requirement() -> str | None:
    """What this host lacks for torch_cuda, as a sentence; None when everything is there."""
    cuda = _torch_cuda_version()
    if cuda is False:
        return NO_TORCH
    if not cuda:
        return CPU_BUILD
    if _cuda_device_count() == 0:
        return NO_DEVICE
    return None
