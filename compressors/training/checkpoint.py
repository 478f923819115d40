"""Training checkpoints of a job step: written atomically, read back without unpickling.

A checkpoint is one `torch.save` file (`state.pt`) in the step's checkpoint directory (under
the job's directory in the data dir, see `service.jobs.checkpoints`). It is written to a
temporary name, fsync'd and renamed, so a worker killed at any moment leaves either the
previous checkpoint or the new one. It is read with `torch.load(weights_only=True)`: plain
tensors, numbers, strings, lists and dicts only. Each holds a fingerprint of the technique
and its config; a checkpoint with another fingerprint (a different step) is ignored.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
FILE_NAME = "state.pt"


class Checkpoint:
    """The checkpoint of one training step, in `directory` (None: checkpointing is off)."""

    def __init__(self, directory: Path | None, fingerprint: str) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.fingerprint = fingerprint

    @property
    def path(self) -> Path | None:
        return self.directory / FILE_NAME if self.directory is not None else None

    def save(self, state: dict[str, Any]) -> None:
        import torch

        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            torch.save({**state, "fingerprint": self.fingerprint}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none (or it belongs to another step)."""
        import torch

        if self.path is None or not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, weights_only=True, map_location="cpu")
        except Exception as exc:  # unreadable: start over rather than fail the job
            log.warning("ignoring unreadable checkpoint %s: %s", self.path, exc)
            return None
        if not isinstance(state, dict) or state.get("fingerprint") != self.fingerprint:
            log.warning("ignoring checkpoint %s of another step", self.path)
            return None
        return state
