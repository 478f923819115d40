"""One trial of a search: run a chain of steps (through the step cache), screen it, measure it.

Nothing here knows Optuna: `service.search.objective` turns `Pruned` into optuna's
TrialPruned and an `Outcome` into objective values and constraints.

1. **Chain**: each step's output is looked up in the content-addressed step cache first,
   so a prefix another trial (or an earlier search) already computed is not run again.
2. **Screen**: a quick quality check of the variant against the parent on at most
   `SCREEN_SAMPLES` samples, before the dear measurements. A variant that breaks the
   quality budget by more than twice (plus a margin for the small sample) is hopeless
   and pruned.
3. **Measure**: the parent and the variant in one `evaluate` call with the job's
   settings: exactly how a job measures a variant against its parent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressors.base import Artifact, Dataset, ProgressFn, StepContext
from compressors.pipeline import parse_steps, run_recipe
from pareto_core.errors import FailedPrecondition
from pareto_core.formats import FORMAT_ONNX
from service.search.measures import summarize
from service.search.step_cache import StepCache, step_key
from service.store.records import RecipeSpec

if TYPE_CHECKING:
    from compressors.measure.evaluate import EvaluationSettings

SCREEN_SAMPLES = 200


class Pruned(Exception):
    """The trial was stopped early; the message says why."""


class NotApplicable(Exception):
    """A step said it cannot apply to this model (FAILED_PRECONDITION): every chain that
    starts with the same steps would fail the same way."""

    def __init__(self, step: int, technique: str, reason: str) -> None:
        super().__init__(f"step {step + 1} ({technique}) cannot apply here: {reason}")
        self.step = step  # 0-based index of the failing step in the chain


@dataclass
class TrialInputs:
    """What every trial of one search run shares."""

    parent: Artifact
    parent_key: str  # sha256 of the parent's file: the root of every chain's cache key
    datasets: dict[str, Dataset]
    datasets_key: str  # what the datasets are (their sha256s), part of every cache key
    settings: EvaluationSettings
    budget: dict[str, Any]
    spec: dict[str, Any]
    cache: StepCache
    work_dir: Path
    threads: int = 1
    is_cancelled: Callable[[], bool] = lambda: False
    progress: ProgressFn = lambda fraction, message, metrics: None
    models: Callable[[str], Artifact] | None = None


@dataclass
class Built:
    artifact: Artifact
    reports: list[dict[str, Any]]
    cached_steps: int


def chain_keys(inputs: TrialInputs, steps: list[dict[str, Any]]) -> list[str]:
    """The cache key of each step's output; the last one names the whole recipe."""
    from compressors import registry

    keys, previous = [], inputs.parent_key
    for step in parse_steps(steps):
        config = registry.config_to_json(step.name, step.config)
        previous = step_key(
            previous, step.name, config, inputs.datasets_key, int(inputs.spec["seed"])
        )
        keys.append(previous)
    return keys


def build(inputs: TrialInputs, steps: list[dict[str, Any]], work_dir: Path) -> Built:
    """The chain's final artifact, each step taken from the cache or run and cached."""
    parsed = parse_steps(steps)
    artifact, reports, cached = inputs.parent, [], 0
    for j, (step, key) in enumerate(zip(parsed, chain_keys(inputs, steps), strict=True)):
        hit = inputs.cache.get(key)
        if hit is not None:
            artifact, report = hit
            cached += 1
        else:
            ctx = StepContext(
                work_dir=work_dir / f"step-{j + 1}-{step.name}",
                parent=inputs.parent,
                datasets=inputs.datasets,
                progress=inputs.progress,
                is_cancelled=inputs.is_cancelled,
                threads=inputs.threads,
                seed=int(inputs.spec["seed"]),
                quality_budget=dict(inputs.budget),
                models=inputs.models,
            )
            try:
                out, (report,) = run_recipe(artifact, [step], lambda _i, _s, c=ctx: c)
            except FailedPrecondition as exc:
                raise NotApplicable(j, step.name, str(exc)) from exc
            report = {**report, "step": j + 1}
            artifact = inputs.cache.put(key, out, report)
        reports.append(report)
    if artifact.format != FORMAT_ONNX:
        raise FailedPrecondition(f"the chain ends with a {artifact.format!r} model, not ONNX")
    return Built(artifact, reports, cached)


def screening_budget(budget: dict[str, Any]) -> dict[str, Any]:
    """The budget loosened to twice its size plus a margin: what only a hopeless variant
    breaks on a small sample."""
    loose: dict[str, Any] = {}
    for key, limit in budget.items():
        if key == "max_accuracy_drop":
            loose[key] = min(1.0, 2 * limit + 0.02)
        elif key in ("min_cosine", "min_top1_agreement"):
            low = -1.0 if key == "min_cosine" else 0.0
            loose[key] = max(low, 1.0 - 2 * (1.0 - limit) - 0.02)
    return loose


def screen(inputs: TrialInputs, artifact: Artifact) -> None:
    """Pruned when the variant is hopeless on a quick quality check."""
    from compressors.measure.budget import check_budget
    from compressors.measure.evaluate import check_measurable, evaluate

    check_measurable(artifact, inputs.settings)
    quick = replace(
        inputs.settings,
        batch_sizes=(min(inputs.settings.batch_sizes),),
        iterations=1,
        warmup=0,
        measure_memory=False,
        max_eval_samples=SCREEN_SAMPLES,
    )
    parent_m, (variant_m,) = evaluate(inputs.parent, [artifact], _dataset(inputs), quick)
    loose = screening_budget(inputs.budget)
    ok, reason = check_budget(parent_m, variant_m, loose)
    if not ok:
        raise Pruned(f"hopeless on a quick check of {SCREEN_SAMPLES} samples: {reason}")


def _dataset(inputs: TrialInputs) -> Dataset | None:
    from compressors.base import EVALUATION_ROLES

    return next((inputs.datasets[r] for r in EVALUATION_ROLES if r in inputs.datasets), None)


def measure(
    inputs: TrialInputs, name: str, steps: list[dict[str, Any]], built: Built
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(parent's, variant's) Measurement, taken in one run as a job takes them."""
    from service.jobs.variant_store import Produced
    from service.jobs.variant_store import measure as measure_variants

    produced = Produced(RecipeSpec(name, tuple(steps)), built.artifact, built.reports)
    parent_m, (variant_m,) = measure_variants(
        inputs.parent, [produced], inputs.datasets, inputs.settings, inputs.progress
    )
    return parent_m, variant_m


def run_trial(inputs: TrialInputs, name: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The trial's outcome (see measures.summarize), or Pruned, or the step's error."""
    started = time.monotonic()
    work_dir = inputs.work_dir / name.split()[0]
    built = build(inputs, steps, work_dir)
    inputs.progress(0.5, f"{name}: screening", {})
    screen(inputs, built.artifact)
    inputs.progress(0.6, f"{name}: measuring beside the parent", {})
    parent_m, variant_m = measure(inputs, name, steps, built)
    outcome = summarize(parent_m, variant_m, inputs.budget, inputs.spec)
    outcome["cached_steps"] = built.cached_steps
    outcome["seconds"] = round(time.monotonic() - started, 3)
    return outcome
