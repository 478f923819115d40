"""The trials of one search run: ask the study, run up to `parallelism` trials at once,
tell it how each ended.

The budget is that of `study.optimize`, kept by hand because trials run elsewhere: at most
`n_trials` counted trials (free and interrupted ones do not count), at most `max_asked`
trials asked in all (free ones may not go on for ever), no new trial after `timeout_s`
(those running finish). A trial whose recipe is the same as a running one's waits for it
and then reuses its measurement, instead of measuring the same recipe twice at once. With
parallelism > 1 the free slots get new trials before the ended ones are told (telling,
and storing the result so far, takes a while): the sampler sees those as still running.

On a cancel (or a server stop) no trial is started any more, the running ones are
stopped, marked interrupted (not counted: a restarted worker runs them again), and
`Cancelled` is raised.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from optuna.trial import FrozenTrial

from pareto_core.errors import Cancelled
from service.search.executors import TrialExecutor
from service.search.objective import Asked, Objective
from service.search.outcome import CANCELLED, FAILED, TrialResult

WAIT_S = 0.5  # how long one wait for a finished trial lasts before cancels are checked
CANCEL_GRACE_S = 10.0  # how long stopped trials may take to report back


@dataclass(frozen=True)
class Budget:
    n_trials: int  # counted trials this run may still finish
    max_asked: int  # trials this run may ask in all
    timeout_s: float


class TrialLoop:
    def __init__(
        self,
        study: Any,
        objective: Objective,
        executor: TrialExecutor,
        is_cancelled: Callable[[], bool],
        on_start: Callable[[Asked], None],
        after_trial: Callable[[FrozenTrial], bool],
    ) -> None:
        """`after_trial` gets every finished trial and says whether it counts."""
        self.study = study
        self.objective = objective
        self.executor = executor
        self.is_cancelled = is_cancelled
        self.on_start = on_start
        self.after_trial = after_trial
        self.running: dict[int, Asked] = {}
        self.ended: list[Asked] = []  # ended, the study not told yet
        self.waiting: list[Asked] = []  # same recipe as a running trial
        self.counted = 0
        self.asked = 0

    def run(self, budget: Budget) -> None:
        deadline = time.monotonic() + budget.timeout_s
        while not self.is_cancelled():
            self._fill(budget, deadline)
            if not self.running:
                break
            done = [(self.running.pop(n), r) for n, r in self.executor.finished(WAIT_S)]
            self.ended = [asked for asked, _ in done]
            if self.executor.parallelism > 1:  # new trials first: telling takes a while
                self._fill(budget, deadline)
            for asked, result in done:
                self.ended.remove(asked)
                self._finish(asked, result)
        if self.is_cancelled():
            self._stop()
            raise Cancelled("search stopped between trials")

    def _fill(self, budget: Budget, deadline: float) -> None:
        while self._may_ask(budget, deadline):
            self._start(self.objective.ask(self.study))
            self.asked += 1

    def _may_ask(self, budget: Budget, deadline: float) -> bool:
        maybe_counted = len(self.running) + len(self.ended) + len(self.waiting)
        return (
            not self.is_cancelled()
            and len(self.running) < self.executor.parallelism
            and self.counted + maybe_counted < budget.n_trials
            and self.asked < budget.max_asked
            and time.monotonic() < deadline
        )

    def _start(self, asked: Asked) -> None:
        if any(r.key == asked.key for r in [*self.running.values(), *self.ended]):
            self.waiting.append(asked)
            return
        free = self.objective.settle_free(asked)
        if free is not None:
            self._tell(asked, free)
            return
        self.on_start(asked)
        self.running[asked.number] = asked
        self.executor.submit(asked.task)

    def _finish(self, asked: Asked, result: TrialResult) -> None:
        self._tell(asked, result)
        twins = [w for w in self.waiting if w.key == asked.key]
        self.waiting = [w for w in self.waiting if w.key != asked.key]
        for twin in twins:
            self._start(twin)

    def _tell(self, asked: Asked, result: TrialResult) -> None:
        frozen = self.objective.tell(self.study, asked, result)
        if result.kind != CANCELLED:  # interrupted: not counted, run again on a restart
            self.counted += self.after_trial(frozen)

    def _stop(self) -> None:
        """Stop the running trials and mark them (and waiting ones) interrupted."""
        self.executor.cancel()
        deadline = time.monotonic() + CANCEL_GRACE_S
        while self.running and time.monotonic() < deadline:
            for number, result in self.executor.finished(WAIT_S):
                self.objective.tell(self.study, self.running.pop(number), _interrupted(result))
        for asked in [*self.running.values(), *self.waiting]:
            self.objective.tell(self.study, asked, TrialResult(CANCELLED))
        self.running.clear()
        self.waiting.clear()


def _interrupted(result: TrialResult) -> TrialResult:
    """A trial that ended while the search stopped counts as interrupted, unless it got as
    far as a measured (or pruned) result."""
    return result if result.kind != FAILED else TrialResult(CANCELLED, worker=result.worker)
