"""A trial's life in the Optuna study: asked (a recipe sampled), maybe settled at once
without running (free), told how its run ended (service/search/outcome.py).

Only the search's worker talks to the study (ask and tell, service/search/loop.py), so a
study has one writer however many trials run at once and wherever they run.

Everything a trial learns is kept on it (user attrs): the job that ran it, its recipe, the
measurements of the variant and of the parent in the same run, objectives, constraints,
violations, what the step cache saved. Constraints go to the sampler with
`trial.set_constraint` (<= 0: met), which Optuna 5's TPE and NSGA-II samplers read.

Outcomes other than a measured variant:
* a chain whose first steps, with the same categorical settings, said twice that they
  cannot apply to this model (FAILED_PRECONDITION) and never ran through is pruned at once
  without running anything (the study's `inapplicable` and `applicable` attrs): e.g.
  structured pruning of a graph onnx2torch cannot convert, or an entropy calibration
  that fails on this model where minmax works;
* a recipe measured before in this study (same content address) reuses that measurement.
  Both are `free`: they do not count against the job's trial budget;
* a hopeless variant (quick quality check) is pruned;
* any other error fails the trial, never the search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from service.search import space
from service.search.outcome import (
    CANCELLED,
    COMPLETE,
    INAPPLICABLE,
    PRUNED,
    TrialResult,
    TrialTask,
)
from service.search.trial import TrialInputs, chain_keys

INAPPLICABLE_ATTR = "inapplicable"  # study attr: prefix key -> (failures, last reason)
APPLICABLE = "applicable"  # study attr: prefix keys that ran through at least once
BLOCK_AFTER = 2  # FAILED_PRECONDITIONs of a prefix that never worked before it is skipped
REUSED = (
    "quality_metric",
    "metrics",
    "parent",
    "objectives",
    "constraints",
    "feasible",
    "violations",
    "excess",
)


def prefix_keys(steps: list[dict[str, Any]]) -> list[str]:
    """For each step, what decides whether the chain up to it can apply: the techniques and
    their categorical settings (a method, a format), not their amounts. E.g.
    "low_rank.svd+quantize.static(format=qdq,method=entropy,per_channel=True)"."""
    keys, parts = [], []
    for step in steps:
        settings = sorted((k, v) for k, v in step["config"].items() if isinstance(v, str | bool))
        text = ",".join(f"{k}={v}" for k, v in settings)
        parts.append(step["technique"] + (f"({text})" if text else ""))
        keys.append(space.CHAIN_SEPARATOR.join(parts))
    return keys


@dataclass(frozen=True)
class Asked:
    """A trial the study handed out, with the recipe sampled for it."""

    trial: optuna.Trial
    chain: str
    task: TrialTask
    key: str  # the recipe's content address: the last step's cache key

    @property
    def number(self) -> int:
        return int(self.trial.number)


class Objective:
    def __init__(
        self,
        inputs: TrialInputs,
        job_id: str,
        options: list[str],
        ctx: space.SpaceContext,
    ) -> None:
        self.inputs = inputs
        self.job_id = job_id
        self.options = options
        self.ctx = ctx

    def ask(self, study: optuna.Study) -> Asked:
        """A new trial (an enqueued first guess first) with its recipe sampled and kept."""
        trial = study.ask()
        trial.set_user_attr("job_id", self.job_id)
        chain, steps = space.sample_steps(trial, self.options, self.ctx)
        name = f"trial-{trial.number} {chain}"
        for key, value in {"chain": chain, "steps": steps, "name": name}.items():
            trial.set_user_attr(key, value)
        key = chain_keys(self.inputs, steps)[-1]
        trial.set_user_attr("chain_key", key)
        return Asked(trial, chain, TrialTask(trial.number, name, steps), key)

    def settle_free(self, asked: Asked) -> TrialResult | None:
        """The result of a trial that need not run (a chain known not to apply, a recipe
        measured before), else None."""
        skipped = self._inapplicable(asked.trial, asked.task.steps)
        if skipped is not None:
            return TrialResult(PRUNED, {"free": True}, f"skipped: {skipped}")
        return self._reused(asked.trial, asked.key)

    def tell(self, study: optuna.Study, asked: Asked, result: TrialResult) -> FrozenTrial:
        """Keep what the trial learned on it and tell the study how it ended."""
        trial, steps = asked.trial, asked.task.steps
        if result.worker:
            trial.set_user_attr("worker", result.worker)
        free = bool(result.outcome.get("free"))
        if result.kind == COMPLETE:
            if not free:
                self._note_applicable(trial, steps)
            for k, v in result.outcome.items():
                trial.set_user_attr(k, v)
            for k, v in result.outcome["constraints"].items():
                trial.set_constraint(k, v)
            objectives = result.outcome["objectives"]
            values = [
                objectives["quality"],
                *(objectives[o] for o in self.inputs.spec["objectives"]),
            ]
            return study.tell(trial, values)
        if result.kind == PRUNED:
            if free:
                trial.set_user_attr("free", True)
            else:
                self._note_applicable(trial, steps)
            trial.set_user_attr("message", result.message)
            return study.tell(trial, state=TrialState.PRUNED)
        if result.kind == INAPPLICABLE:
            self._note_inapplicable(trial, steps, result)
            trial.set_user_attr("message", result.message)
        elif result.kind == CANCELLED:
            trial.set_user_attr("interrupted", True)
        else:
            trial.set_user_attr("message", f"failed: {result.message}")
        return study.tell(trial, state=TrialState.FAIL)

    def _inapplicable(self, trial: optuna.Trial, steps: list[dict[str, Any]]) -> str | None:
        attrs = trial.study.user_attrs
        worked = set(attrs.get(APPLICABLE, []))
        failures = attrs.get(INAPPLICABLE_ATTR, {})
        for key in prefix_keys(steps):
            count, reason = failures.get(key, (0, ""))
            if count >= BLOCK_AFTER and key not in worked:
                return str(reason)
        return None

    def _note_applicable(self, trial: optuna.Trial, steps: list[dict[str, Any]]) -> None:
        """Every prefix of a chain that ran through is applicable, whatever failed before."""
        keys = set(prefix_keys(steps))
        known = set(trial.study.user_attrs.get(APPLICABLE, []))
        if not keys <= known:
            trial.study.set_user_attr(APPLICABLE, sorted(known | keys))

    def _note_inapplicable(
        self, trial: optuna.Trial, steps: list[dict[str, Any]], result: TrialResult
    ) -> None:
        key = prefix_keys(steps)[result.step]
        failures = dict(trial.study.user_attrs.get(INAPPLICABLE_ATTR, {}))
        count = failures.get(key, (0, ""))[0]
        failures[key] = (count + 1, result.message)
        trial.study.set_user_attr(INAPPLICABLE_ATTR, failures)

    def _reused(self, trial: optuna.Trial, key: str) -> TrialResult | None:
        """The outcome of an earlier complete trial with the very same recipe."""
        for earlier in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            attrs = earlier.user_attrs
            if attrs.get("chain_key") == key and not attrs.get("duplicate_of"):
                outcome = {k: attrs[k] for k in REUSED if k in attrs}
                outcome["duplicate_of"] = earlier.number
                outcome["free"] = True
                outcome["message"] = f"same recipe as trial {earlier.number}: measurement reused"
                outcome["seconds"] = 0.0
                return TrialResult(COMPLETE, outcome)
        return None
