"""What a search job's worker does: run trials in the study, then keep the frontier.

Trials run `search.parallelism` at a time (service/search/loop.py): in this worker, in
trial processes beside it, or as Ray tasks (service/search/executors.py); only this worker
asks and tells the study. The job's trial budget is `n_trials` trials run by this job (a
restarted worker counts those an earlier attempt finished; a repeat of a measured recipe,
or a chain known not to apply, is free) and `timeout_s` of their time; the worker also
stops well before PARETO_JOB_TIMEOUT_S so the frontier can be stored. After every trial
the result (all trials of the study, the frontier so far) is written beside the job, so
GetSearch shows the search as it goes. At the end the frontier trials without a variant are
stored as variants; the job SUCCEEDS with a recommended variant, or FAILS saying that no
trial met the limits and which came closest (its result stays readable).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pareto_core.errors import Cancelled, FailedPrecondition, ParetoError
from service.jobs.events import JobProgress, finish_job
from service.jobs.spawn import scratch_path, shared_settings
from service.search import space
from service.search.result import build_result, trial_line
from service.search.spec import parallelism, uses_memory
from service.search.trial import TrialInputs
from service.search.variants import store_frontier, stored_variants
from service.settings import Settings
from service.store.blobs import BlobStore
from service.store.interfaces import Repository
from service.store.records import JOB_FAILED, JOB_RUNNING, JOB_SUCCEEDED, JobRecord

if TYPE_CHECKING:
    from service.search.executors import TrialExecutor

log = logging.getLogger(__name__)

TRIALS_SHARE = 90.0
JOB_TIMEOUT_SHARE = 0.8  # of PARETO_JOB_TIMEOUT_S the trials may use; the rest: storing
FREE_FACTOR = 3  # all trials of a job, free ones included, stay under this x n_trials


class SearchRun:
    def __init__(
        self,
        repo: Repository,
        blobs: BlobStore,
        job: JobRecord,
        spec: dict[str, Any],
        settings: Settings,
        is_cancelled: Any,
    ) -> None:
        self.repo = repo
        self.blobs = blobs
        self.job = job
        self.spec = spec
        self.settings = settings
        self.is_cancelled = is_cancelled
        self.progress = JobProgress(repo, job.id)
        self.started = time.monotonic()
        self.done = 0
        self.variants: dict[int, str] = {}

    def run(self) -> None:
        explored = ", ".join(self.spec["techniques"])
        self.progress.emit("prepare", 0.0, f"search exploring {explored}", force=True)
        scratch = scratch_path(self.blobs.root, self.job.id, self.job.attempts)
        shutil.rmtree(scratch, ignore_errors=True)  # a leftover of this run's earlier start
        scratch.mkdir(parents=True)
        result: dict[str, Any] | None = None
        problems: list[str] = []
        trials = self._trials()  # trial processes start now, beside the set-up below
        try:
            self.inputs = self._inputs(scratch)
            study = self._study()
            self._optimize(study, self.inputs, trials)
            result, problems = self._conclude(study, self.inputs)
        except Cancelled:
            log.info("search %s stopped: cancelled or server stopping", self.job.id)
            return
        except ParetoError as exc:
            problems.append(str(exc))
        finally:
            trials.close()
            shutil.rmtree(scratch, ignore_errors=True)
        self._finish(result, problems)

    # -- set-up ----------------------------------------------------------------------------

    def _inputs(self, scratch: Path) -> TrialInputs:
        from compressors.measure.evaluate import check_measurable
        from service.search.inputs import search_inputs

        inputs = search_inputs(
            self.repo,
            self.blobs,
            self.job,
            self.spec,
            self.settings,
            scratch,
            self.is_cancelled,
            self._step_progress,
        )
        try:
            check_measurable(inputs.parent, inputs.settings)
        except ParetoError as exc:
            raise FailedPrecondition(
                f"the parent cannot be measured on {inputs.settings.runtime}: {exc}"
            ) from exc
        return inputs

    def _study(self) -> Any:
        from service.search import study as studies

        database_url = studies.database_url(self.settings)
        self.storage = studies.open_storage(self.blobs.root, database_url)
        existing = studies.count_trials(self.storage, self.spec["study"])
        sampler = studies.make_sampler(self.spec, existing)
        study = studies.open_study(self.storage, self.spec, sampler)
        studies.fail_stale_trials(self.storage, study)
        self.study = study
        return study

    # -- trials ----------------------------------------------------------------------------

    def _records(self, study: Any) -> list[dict[str, Any]]:
        """Every trial of the study that started (enqueued ones still waiting are not)."""
        from service.search.study import STARTED, trial_record

        return [trial_record(t) for t in study.get_trials(deepcopy=False, states=STARTED)]

    def _mine(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Finished trials of this job that ran something (not interrupted, not free)."""
        return [r for r in records if r.get("job_id") == self.job.id and _counts(r)]

    def _trials(self) -> TrialExecutor:
        from service.search.executors import make_executor

        return make_executor(
            lambda: self.inputs,
            self._trial_context(),
            parallelism(self.spec),
            bool(self.settings.ray_address),
            self._trial_progress,
        )

    def _optimize(self, study: Any, inputs: TrialInputs, trials: TrialExecutor) -> None:
        from service.search.loop import Budget, TrialLoop
        from service.search.objective import Objective

        records = self._records(study)
        mine = self._mine(records)
        self.done = len(mine)
        self.variants = stored_variants(self.repo, self.job.model, _job_ids(records, self.job))
        remaining = int(self.spec["n_trials"]) - self.done
        timeout = self._time_left(mine)
        if remaining <= 0 or timeout <= 0:
            return
        # free trials (repeats, chains known not to apply) may not go on for ever
        ran = sum(r.get("job_id") == self.job.id for r in records)
        cap = FREE_FACTOR * int(self.spec["n_trials"]) - ran
        labels = {role: d.labels is not None for role, d in inputs.datasets.items()}
        transformer = _is_transformer(inputs.parent.path)
        ctx = space.space_context(labels, int(self.spec["seed"]), transformer)
        options = space.chains(self.spec["techniques"], int(self.spec["max_steps"]))
        if not records:  # a fresh study starts from each technique's first guess
            n_trials = int(self.spec["n_trials"])
            for params in space.first_guesses(options, n_trials, transformer):
                study.enqueue_trial(params, skip_if_exists=True)
        objective = Objective(inputs, self.job.id, options, ctx)
        loop = TrialLoop(
            study, objective, trials, self.is_cancelled, self._on_start, self._after_trial
        )
        try:
            loop.run(Budget(remaining, max(remaining, cap), timeout))
        finally:
            trials.close()  # no trial process waits idle through the final measurement
        if self.is_cancelled():  # stopped between trials: the job resumes (or was cancelled)
            raise Cancelled("search stopped between trials")

    def _trial_context(self) -> Any:
        from service.search.trial_process import TrialContext

        data_dir = str(self.blobs.root.resolve())
        values = shared_settings(self.settings)
        return TrialContext(data_dir, self.job.id, self.job.attempts, values)

    def _time_left(self, mine: list[dict[str, Any]]) -> float:
        cap = self.settings.job_timeout_s * JOB_TIMEOUT_SHARE - (time.monotonic() - self.started)
        limit = float(self.spec.get("timeout_s") or 0.0)
        if limit <= 0:
            return cap
        return min(cap, limit - sum(float(r.get("seconds", 0.0)) for r in mine))

    def _percent(self) -> float:
        """The share of the trial budget used: trials, or time when that is nearer."""
        done = self.done / max(1, int(self.spec["n_trials"]))
        limit = float(self.spec.get("timeout_s") or 0.0)
        if limit > 0:
            done = max(done, (time.monotonic() - self.started) / limit)
        return TRIALS_SHARE * min(1.0, done)

    def _on_start(self, asked: Any) -> None:
        n = int(self.spec["n_trials"])
        message = f"trial {self.done + 1}/{n} (#{asked.number}): {asked.chain}"
        self.progress.emit(f"trial {asked.number}", self._percent(), message, force=True)

    def _step_progress(self, fraction: float, message: str, metrics: dict[str, float]) -> None:
        self.progress.emit("trial", self._percent(), message, metrics)

    def _trial_progress(self, number: int, message: str, metrics: dict[str, float]) -> None:
        """What a trial running in a process beside this worker says."""
        self.progress.emit(f"trial {number}", self._percent(), message, metrics)

    def _after_trial(self, frozen: Any) -> bool:
        """Report a finished trial and store the result so far; whether it counts."""
        from service.search.study import trial_record

        record = trial_record(frozen)
        counts = _counts(record)
        self.done += counts
        text = trial_line(record, self.spec)
        metrics = {k: float(v) for k, v in record.get("objectives", {}).items()}
        self.progress.emit(f"trial {record['number']}", self._percent(), text, metrics, force=True)
        records = self._records(self.study)
        result = build_result(records, self.spec, self.job.quality_budget, self.variants)
        self.repo.put_search_result(self.job.id, result)
        return counts

    # -- the end ---------------------------------------------------------------------------

    def _conclude(self, study: Any, inputs: TrialInputs) -> tuple[dict[str, Any], list[str]]:
        records = self._records(study)
        self.variants = stored_variants(self.repo, self.job.model, _job_ids(records, self.job))
        result = build_result(records, self.spec, self.job.quality_budget, self.variants)
        by_number = {t["number"]: t for t in result["trials"]}
        todo = [by_number[n] for n in result["frontier"] if n not in self.variants]
        problems: list[str] = []
        if todo and self._still_running():
            memory = self.settings.measure_memory or uses_memory(self.spec)
            final = replace(inputs, settings=replace(inputs.settings, measure_memory=memory))
            stored, problems = store_frontier(
                self.repo, self.blobs, self.job, final, todo, self._store_event
            )
            self.variants |= stored
            result = build_result(records, self.spec, self.job.quality_budget, self.variants)
        self.repo.put_search_result(self.job.id, result)
        return result, problems

    def _store_event(self, message: str) -> None:
        self.progress.emit("store", 95.0, message, force=True)

    def _still_running(self) -> bool:
        return self.repo.get_job(self.job.id).state == JOB_RUNNING

    def _finish(self, result: dict[str, Any] | None, problems: list[str]) -> None:
        own = tuple(
            v.id for v in self.repo.list_variants(self.job.model) if v.job_id == self.job.id
        )
        notes = f"; not stored: {'; '.join(problems)}" if problems else ""
        if result is not None and result.get("recommended_trial") is not None:
            finish_job(
                self.repo,
                self.job.id,
                JOB_SUCCEEDED,
                message=result["message"] + notes,
                percent=100.0,
                variant_ids=own,
            )
            return
        if result is None:
            reason = "; ".join(problems) or "the search could not run"
        else:
            reason = result["message"] + notes
        finish_job(self.repo, self.job.id, JOB_FAILED, reason, variant_ids=own)


def _job_ids(records: list[dict[str, Any]], job: JobRecord) -> set[str]:
    return {str(r["job_id"]) for r in records if r.get("job_id")} | {job.id}


def _counts(record: dict[str, Any]) -> bool:
    """Whether a trial counts against the budget: it ran and it was not free."""
    finished = record["state"] != "RUNNING" and not record.get("interrupted")
    return finished and not record.get("free")


def _is_transformer(path: Path) -> bool:
    """Whether the parent has self-attention (the search space samples transformer-aware
    settings then); a graph that cannot be read is searched as it is, not as a transformer."""
    from compressors.graph.files import load_model
    from compressors.graph.transformer import looks_like_transformer

    try:
        return looks_like_transformer(load_model(path))
    except Exception:  # the trials report what is wrong with the model
        return False
