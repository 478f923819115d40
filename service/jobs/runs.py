"""A run of a job as the scheduler sees it, whatever runs it (service/jobs/launcher.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class RunHandle(Protocol):
    """One run of a job: `subprocess.Popen` is one."""

    pid: int

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


@dataclass(frozen=True)
class RunEnd:
    """Why a run ended without finishing its job, and whether the job runs again (re-queued
    within PARETO_JOB_MAX_ATTEMPTS) or fails with the reason."""

    reason: str
    retry: bool
