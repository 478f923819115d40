"""What a job's worker process does: run every recipe, measure, store the variants.

Each recipe (alternative i of n) runs through the pipeline in its own scratch directory;
one that fails is reported as an event and skipped. Then the parent and every produced
variant are measured in ONE `evaluate` call (so ratios are honest), each variant is checked
against the quality budget, and those that pass (or all, with `keep_failing`) are stored:
blob first, record second, like an upload. The job ends SUCCEEDED when at least one
variant was stored, else FAILED with the reason of every alternative.

A restarted job skips the alternatives whose variant a previous attempt already stored.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressors.base import Artifact, Dataset, StepContext
from compressors.pipeline import Step, parse_steps, run_recipe
from pareto_core.errors import Cancelled, FailedPrecondition, Internal, ParetoError
from pareto_core.formats import FORMAT_ONNX
from service.jobs.checkpoints import remove_checkpoints, step_checkpoints
from service.jobs.events import JobProgress, finish_job
from service.jobs.job_inputs import job_evaluation_settings, load_job_inputs, parent_artifact
from service.jobs.spawn import scratch_path
from service.jobs.variant_store import (
    Produced,
    measure,
    store_variant,
)
from service.settings import Settings
from service.store.blobs import BlobStore
from service.store.interfaces import Repository
from service.store.records import (
    JOB_FAILED,
    JOB_RUNNING,
    JOB_SUCCEEDED,
    JobRecord,
    RecipeSpec,
    VariantRecord,
)

if TYPE_CHECKING:
    from compressors.measure.evaluate import EvaluationSettings

log = logging.getLogger(__name__)

# Shares of the job's percent: running the recipes, then measuring; storing gets the rest.
RECIPES_SHARE = 90.0
EVALUATION_SHARE = 8.0


class JobRun:
    def __init__(
        self,
        repo: Repository,
        blobs: BlobStore,
        job: JobRecord,
        settings: Settings,
        is_cancelled: Callable[[], bool],
    ) -> None:
        self.repo = repo
        self.blobs = blobs
        self.job = job
        self.settings = settings
        self.is_cancelled = is_cancelled
        self.progress = JobProgress(repo, job.id)
        self.failures: list[str] = []
        self.parent_sha256 = ""  # set by _load_inputs: the artifact cache keys on it
        self.stored: list[str] = [v.id for v in self._previous_variants()]

    def run(self) -> None:
        self.progress.emit("prepare", 0.0, "loading the model and datasets", force=True)
        scratch = scratch_path(self.blobs.root, self.job.id, self.job.attempts)
        shutil.rmtree(scratch, ignore_errors=True)  # a leftover of this run's earlier start
        scratch.mkdir(parents=True)
        try:
            parent, datasets = self._load_inputs()
            produced = self._run_recipes(parent, datasets, scratch)
            if produced:
                self._evaluate_and_store(parent, produced, datasets)
        except Cancelled:
            log.info("job %s stopped: %s", self.job.id, "cancelled or server stopping")
            if not self._still_running():  # cancelled: it will not resume
                remove_checkpoints(self.blobs.root, self.job.id)
            return
        except ParetoError as exc:
            self.failures.append(str(exc))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        self._finish()

    def _previous_variants(self) -> list[VariantRecord]:
        return [v for v in self.repo.list_variants(self.job.model) if v.job_id == self.job.id]

    def _load_inputs(self) -> tuple[Artifact, dict[str, Dataset]]:
        parent, datasets, self.parent_sha256 = load_job_inputs(self.repo, self.blobs, self.job)
        return parent, datasets

    # -- recipes -------------------------------------------------------------------------

    def _run_recipes(
        self, parent: Artifact, datasets: dict[str, Dataset], scratch: Path
    ) -> list[Produced]:
        done = {v.recipe.name for v in self._previous_variants()}
        produced = []
        for i, recipe in enumerate(self.job.recipes):
            if recipe.name in done:
                self._event(i, 1.0, f"{recipe.name}: stored by an earlier attempt; skipped")
                continue
            result = self._run_one(i, recipe, parent, datasets, scratch / f"recipe-{i}")
            if result is not None:
                produced.append(result)
        return produced

    def _run_one(
        self,
        i: int,
        recipe: RecipeSpec,
        parent: Artifact,
        datasets: dict[str, Dataset],
        work_dir: Path,
    ) -> Produced | None:
        self._event(i, 0.0, f"{recipe.name}: started")
        try:
            steps = parse_steps(recipe.steps, where=f"recipes[{i}].steps")
            factory = self._context_factory(i, len(steps), parent, datasets, work_dir)
            artifact, reports = run_recipe(parent, steps, factory)
            if artifact.format != FORMAT_ONNX:
                raise FailedPrecondition(
                    f"the last step returns a {artifact.format!r} model; variants are "
                    "served from ONNX, so end the recipe with a step that exports ONNX"
                )
        except Cancelled:
            raise
        except Exception as exc:  # a failing alternative never takes the job down
            why = _describe(exc)
            self.failures.append(f"{recipe.name}: {why}")
            self._event(i, 1.0, f"{recipe.name}: failed: {why}")
            if not isinstance(exc, ParetoError):
                log.exception("recipe %s of job %s failed", recipe.name, self.job.id)
            return None
        self._event(i, 1.0, f"{recipe.name}: done")
        return Produced(recipe, artifact, reports)

    def _context_factory(
        self,
        i: int,
        n_steps: int,
        parent: Artifact,
        datasets: dict[str, Dataset],
        work_dir: Path,
    ) -> Callable[[int, Step], StepContext]:
        def make(j: int, step: Step) -> StepContext:
            def progress(fraction: float, message: str, metrics: dict[str, float]) -> None:
                done = (j + min(1.0, max(0.0, fraction))) / n_steps
                self._event(i, done, message, metrics, step.name, force=False)

            self._event(i, j / n_steps, f"step {j + 1}/{n_steps}: {step.name}", step=step.name)
            return StepContext(
                work_dir=work_dir / f"step-{j + 1}-{step.name}",
                parent=parent,
                datasets=datasets,
                progress=progress,
                is_cancelled=self.is_cancelled,
                threads=self.settings.job_threads,
                seed=0,
                quality_budget=dict(self.job.quality_budget),
                checkpoint_dir=step_checkpoints(self.blobs.root, self.job.id, i, j + 1),
                models=self._uploaded_model,
            )

        return make

    def _uploaded_model(self, name: str) -> Artifact:
        return parent_artifact(self.blobs, self.repo.get_model(name, 0))

    def _event(
        self,
        i: int,
        fraction: float,
        message: str,
        metrics: dict[str, float] | None = None,
        step: str = "",
        force: bool = True,
    ) -> None:
        n = len(self.job.recipes)
        percent = RECIPES_SHARE * (i + fraction) / n
        self.progress.emit(
            step or f"alternative {i + 1}/{n}", percent, message, metrics, force=force
        )

    # -- evaluation and storing ----------------------------------------------------------

    def _evaluate_and_store(
        self, parent: Artifact, produced: list[Produced], datasets: dict[str, Dataset]
    ) -> None:
        from compressors.measure.budget import check_budget

        settings = self._evaluation_settings(parent)
        produced = self._measurable(parent, produced, settings)
        if not produced:
            return
        names = ", ".join(p.recipe.name for p in produced)
        self.progress.emit(
            "evaluate", RECIPES_SHARE, f"measuring the parent and {names}", force=True
        )
        try:
            parent_m, variant_ms = measure(
                parent, produced, datasets, settings, self._evaluation_progress
            )
        except Exception as exc:  # reported as the job's reason, like a failing recipe
            if not isinstance(exc, ParetoError):
                log.exception("evaluation of job %s failed", self.job.id)
            raise Internal(f"evaluation failed: {_describe(exc)}") from exc
        keep_failing = bool(self.job.quality_budget.get("keep_failing", False))
        for p, metrics in zip(produced, variant_ms, strict=True):
            ok, reason = check_budget(parent_m, metrics, self.job.quality_budget)
            if not ok and not keep_failing:
                self.failures.append(f"{p.recipe.name}: quality budget not met: {reason}")
                self.progress.emit("store", 99.0, f"{p.recipe.name}: {reason}", force=True)
            elif self._still_running():
                self._store(p, (metrics, parent_m), (ok, reason))

    def _evaluation_settings(self, parent: Artifact) -> EvaluationSettings:
        return job_evaluation_settings(
            self.repo,
            self.blobs,
            self.job,
            self.settings,
            (parent, self.parent_sha256),
            self.is_cancelled,
        )

    def _measurable(
        self, parent: Artifact, produced: list[Produced], settings: EvaluationSettings
    ) -> list[Produced]:
        """The alternatives the evaluation runtime can run (their artifacts built now); the
        others fail alone, with the reason. A parent it cannot run fails the job."""
        from compressors.measure.evaluate import check_measurable

        runtime = settings.runtime
        self.progress.emit("evaluate", RECIPES_SHARE, f"preparing for {runtime}", force=True)
        try:
            check_measurable(parent, settings)
        except Cancelled:
            raise
        except ParetoError as exc:
            raise FailedPrecondition(f"the parent cannot be measured on {runtime}: {exc}") from exc
        kept = []
        for p in produced:
            try:
                check_measurable(p.artifact, settings)
            except Cancelled:
                raise
            except ParetoError as exc:
                why = f"{p.recipe.name}: cannot be measured on {runtime}: {exc.code}: {exc}"
                self.failures.append(why)
                self.progress.emit("evaluate", RECIPES_SHARE, why, force=True)
                continue
            kept.append(p)
        return kept

    def _evaluation_progress(
        self, fraction: float, message: str, metrics: dict[str, float]
    ) -> None:
        percent = RECIPES_SHARE + EVALUATION_SHARE * min(1.0, max(0.0, fraction))
        self.progress.emit("evaluate", percent, message, metrics)

    def _store(
        self, p: Produced, metrics: tuple[dict[str, Any], dict[str, Any]], budget: tuple[bool, str]
    ) -> None:
        try:
            record = store_variant(self.repo, self.blobs, self.job, p, metrics, budget)
        except ParetoError as exc:
            self.failures.append(f"{p.recipe.name}: {exc}")
            return
        self.stored.append(record.id)
        self.repo.update_job(self.job.id, variant_ids=tuple(self.stored))
        self.progress.emit("store", 99.0, f"{p.recipe.name}: stored {record.id}", force=True)

    def _still_running(self) -> bool:
        return self.repo.get_job(self.job.id).state == JOB_RUNNING

    def _finish(self) -> None:
        remove_checkpoints(self.blobs.root, self.job.id)
        if self.stored:
            message = f"stored {len(self.stored)} variant(s): {', '.join(self.stored)}"
            if self.failures:
                message += "; not stored: " + "; ".join(self.failures)
            finish_job(
                self.repo,
                self.job.id,
                JOB_SUCCEEDED,
                message=message,
                percent=100.0,
                variant_ids=tuple(self.stored),
            )
            return
        reason = "no variant was stored: " + "; ".join(self.failures or ["no recipe produced one"])
        finish_job(self.repo, self.job.id, JOB_FAILED, reason)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ParetoError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "out of memory (MemoryError; PARETO_JOB_MEMORY_LIMIT_BYTES limits a job)"
    return f"{type(exc).__name__}: {exc}"
