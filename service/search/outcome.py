"""One trial's run as plain, picklable data: what to run (`TrialTask`) and how it ended
(`TrialResult`), and `execute`, which runs a task on prepared inputs.

A trial may run in the search's own worker, in a trial process beside it, or in a Ray
task on another machine (service/search/executors.py, ray_trials.py); whichever runs it
returns a `TrialResult` rather than raising, since exceptions of our own do not all
survive a trip between processes. Only the search's worker talks to the Optuna study
(service/search/objective.py turns a result into what the study is told).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field, replace
from typing import Any

from pareto_core.errors import Cancelled, ParetoError
from service.search.trial import NotApplicable, Pruned, TrialInputs, run_trial

log = logging.getLogger(__name__)

COMPLETE = "complete"
PRUNED = "pruned"
INAPPLICABLE = "inapplicable"  # a step said it cannot apply (FAILED_PRECONDITION)
FAILED = "failed"
CANCELLED = "cancelled"  # stopped by a cancel or a server stop: not counted


@dataclass(frozen=True)
class TrialTask:
    number: int
    name: str
    steps: list[dict[str, Any]]


@dataclass(frozen=True)
class TrialResult:
    kind: str
    outcome: dict[str, Any] = field(default_factory=dict)  # COMPLETE: measures.summarize's
    message: str = ""
    step: int = -1  # INAPPLICABLE: the index of the step that cannot apply
    worker: str = ""  # where it ran, for the trial's record

    def where(self, worker: str) -> TrialResult:
        return replace(self, worker=worker)


def execute(inputs: TrialInputs, task: TrialTask) -> TrialResult:
    """Run the task's chain, screen and measure it; every ending as a TrialResult."""
    shutil.rmtree(inputs.work_dir / task.name.split()[0], ignore_errors=True)  # a lost run's
    try:
        return TrialResult(COMPLETE, run_trial(inputs, task.name, task.steps))
    except Cancelled as exc:
        return TrialResult(CANCELLED, message=str(exc))
    except Pruned as exc:
        return TrialResult(PRUNED, message=str(exc))
    except NotApplicable as exc:
        return TrialResult(INAPPLICABLE, message=str(exc), step=exc.step)
    except Exception as exc:  # a failing trial never takes the search down
        if not isinstance(exc, ParetoError):
            log.exception("trial %s failed", task.number)
        why = str(exc) if isinstance(exc, ParetoError) else f"{type(exc).__name__}: {exc}"
        return TrialResult(FAILED, message=why)
