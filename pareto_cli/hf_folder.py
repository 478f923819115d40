"""Hugging Face folders on the client side: a directory given to `pareto upload` is packed
into a tar (regular files only; links and other entries are skipped), and an archive is
recognized as a folder when it holds a config.json and no .onnx file."""

from __future__ import annotations

import tarfile
import tempfile
import zipfile
from pathlib import Path

# What a directory upload leaves out: VCS metadata, and nothing the server would read.
_SKIPPED_DIRS = {".git", ".cache", "__pycache__"}


def pack_directory(root: Path) -> Path:
    """`root`'s regular files in a new temporary tar (the caller deletes it)."""
    handle = tempfile.NamedTemporaryFile(prefix="pareto-hf-", suffix=".tar", delete=False)  # noqa: SIM115
    handle.close()
    out = Path(handle.name)
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if set(relative.parts) & _SKIPPED_DIRS or path.is_symlink() or not path.is_file():
                continue
            tar.add(path, arcname=relative.as_posix(), recursive=False)
    return out


def is_hf_archive(path: Path) -> bool:
    """Whether the .zip/.tar at `path` holds a Hugging Face folder (config.json, no .onnx)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        elif tarfile.is_tarfile(path):
            with tarfile.open(path) as tar:
                names = tar.getnames()
        else:
            return False
    except (OSError, zipfile.BadZipFile, tarfile.TarError):
        return False
    has_config = any(Path(n).name == "config.json" and len(Path(n).parts) <= 2 for n in names)
    return has_config and not any(n.lower().endswith(".onnx") for n in names)


# runtimes.hf.folder.TASKS (repeated here so the CLI does not import the server's side).
HF_TASKS = (
    "feature-extraction",
    "sentence-embedding",
    "sequence-classification",
    "token-classification",
)
