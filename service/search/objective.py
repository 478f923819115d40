"""The function Optuna calls for each trial: sample a recipe, run it, return its objectives.

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

import logging
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

from pareto_core.errors import Cancelled, ParetoError
from service.search import space
from service.search.trial import NotApplicable, Pruned, TrialInputs, chain_keys, run_trial

log = logging.getLogger(__name__)

INAPPLICABLE = "inapplicable"  # study attr: prefix key -> (failures, last reason)
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


class TrialError(Exception):
    """A trial failed (its message says why); the search goes on."""


class Objective:
    def __init__(
        self,
        inputs: TrialInputs,
        job_id: str,
        options: list[str],
        ctx: space.SpaceContext,
        on_start: Callable[[int, str], None],
    ) -> None:
        self.inputs = inputs
        self.job_id = job_id
        self.options = options
        self.ctx = ctx
        self.on_start = on_start

    def __call__(self, trial: optuna.Trial) -> list[float]:
        if self.inputs.is_cancelled():
            trial.set_user_attr("interrupted", True)
            raise Cancelled("search cancelled")
        trial.set_user_attr("job_id", self.job_id)
        chain, steps = space.sample_steps(trial, self.options, self.ctx)
        name = f"trial-{trial.number} {chain}"
        for key, value in {"chain": chain, "steps": steps, "name": name}.items():
            trial.set_user_attr(key, value)
        self.on_start(trial.number, chain)
        self._skip_inapplicable(trial, steps)
        key = chain_keys(self.inputs, steps)[-1]
        trial.set_user_attr("chain_key", key)
        outcome = self._reused(trial, key) or self._run(trial, name, steps)
        for k, v in outcome.items():
            trial.set_user_attr(k, v)
        for k, v in outcome["constraints"].items():
            trial.set_constraint(k, v)
        objectives = outcome["objectives"]
        return [objectives["quality"], *(objectives[o] for o in self.inputs.spec["objectives"])]

    def _skip_inapplicable(self, trial: optuna.Trial, steps: list[dict[str, Any]]) -> None:
        attrs = trial.study.user_attrs
        worked = set(attrs.get(APPLICABLE, []))
        failures = attrs.get(INAPPLICABLE, {})
        for key in prefix_keys(steps):
            count, reason = failures.get(key, (0, ""))
            if count >= BLOCK_AFTER and key not in worked:
                message = f"skipped: {reason}"
                trial.set_user_attr("message", message)
                trial.set_user_attr("free", True)
                raise optuna.TrialPruned(message)

    def _note_applicable(self, trial: optuna.Trial, steps: list[dict[str, Any]]) -> None:
        """Every prefix of a chain that ran through is applicable, whatever failed before."""
        keys = set(prefix_keys(steps))
        known = set(trial.study.user_attrs.get(APPLICABLE, []))
        if not keys <= known:
            trial.study.set_user_attr(APPLICABLE, sorted(known | keys))

    def _note_inapplicable(
        self, trial: optuna.Trial, steps: list[dict[str, Any]], exc: NotApplicable
    ) -> None:
        key = prefix_keys(steps)[exc.step]
        failures = dict(trial.study.user_attrs.get(INAPPLICABLE, {}))
        count = failures.get(key, (0, ""))[0]
        failures[key] = (count + 1, str(exc))
        trial.study.set_user_attr(INAPPLICABLE, failures)

    def _reused(self, trial: optuna.Trial, key: str) -> dict[str, Any] | None:
        """The outcome of an earlier complete trial with the very same recipe."""
        for earlier in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            attrs = earlier.user_attrs
            if attrs.get("chain_key") == key and not attrs.get("duplicate_of"):
                outcome = {k: attrs[k] for k in REUSED if k in attrs}
                outcome["duplicate_of"] = earlier.number
                outcome["free"] = True
                outcome["message"] = f"same recipe as trial {earlier.number}: measurement reused"
                outcome["seconds"] = 0.0
                return outcome
        return None

    def _run(self, trial: optuna.Trial, name: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            outcome = run_trial(self.inputs, name, steps)
        except Cancelled:
            trial.set_user_attr("interrupted", True)
            raise
        except Pruned as exc:
            self._note_applicable(trial, steps)
            trial.set_user_attr("message", str(exc))
            raise optuna.TrialPruned(str(exc)) from None
        except NotApplicable as exc:
            self._note_inapplicable(trial, steps, exc)
            trial.set_user_attr("message", str(exc))
            raise TrialError(str(exc)) from None
        except Exception as exc:  # a failing trial never takes the search down
            why = str(exc) if isinstance(exc, ParetoError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, ParetoError):
                log.exception("trial %s failed", trial.number)
            trial.set_user_attr("message", f"failed: {why}")
            raise TrialError(why) from None
        self._note_applicable(trial, steps)
        return outcome
