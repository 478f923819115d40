"""Where a job's training checkpoints live: `<data dir>/jobs/<job id>/checkpoints/`.

One directory per recipe step (`recipe-<i>/step-<j>`), so a restarted job finds the
checkpoint of the step it was in. The whole tree is removed when the job ends (succeeded,
failed or cancelled); a job re-queued after a restart keeps it and resumes from it.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def job_checkpoints(data_dir: Path, job_id: str) -> Path:
    return Path(data_dir) / "jobs" / job_id / "checkpoints"


def step_checkpoints(data_dir: Path, job_id: str, recipe: int, step: int) -> Path:
    return job_checkpoints(data_dir, job_id) / f"recipe-{recipe}" / f"step-{step}"


def remove_checkpoints(data_dir: Path, job_id: str) -> None:
    shutil.rmtree(job_checkpoints(data_dir, job_id).parent, ignore_errors=True)
