"""Storing the frontier: every frontier trial becomes a variant, like a job's variant.

The frontier's models are rebuilt from the step cache (or run again when it evicted them:
steps are seeded, so they come out the same), measured together with the parent in ONE
`evaluate` call with the job's settings (memory included, as for every variant), and
stored blob first, record second. A variant's recipe is named `trial-<n> <chain>`, which
is how a restarted worker, or a later job resuming the search, finds the trials that are
stored already and does not store them twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pareto_core.errors import Cancelled, ParetoError
from service.jobs.variant_store import Produced, measure, store_variant
from service.search.trial import TrialInputs, build
from service.store.blobs import BlobStore
from service.store.interfaces import Repository
from service.store.records import JobRecord, RecipeSpec

TRIAL_NAME = re.compile(r"^trial-(\d+) ")


def stored_variants(repo: Repository, model: str, job_ids: Iterable[str]) -> dict[int, str]:
    """trial number -> variant id, for the variants the study's jobs stored."""
    jobs = set(job_ids)
    found: dict[int, str] = {}
    for variant in repo.list_variants(model):
        match = TRIAL_NAME.match(variant.recipe.name)
        if variant.job_id in jobs and match:
            found.setdefault(int(match.group(1)), variant.id)
    return found


def store_frontier(
    repo: Repository,
    blobs: BlobStore,
    job: JobRecord,
    inputs: TrialInputs,
    trials: Sequence[Mapping[str, Any]],
    report: Callable[[str], None],
) -> tuple[dict[int, str], list[str]]:
    """Store `trials` (frontier trials without a variant yet): ({trial: variant id},
    [problems]). A trial that cannot be rebuilt or stored is reported, the others kept."""
    from compressors.measure.budget import check_budget

    produced: list[tuple[int, Produced]] = []
    problems: list[str] = []
    for trial in trials:
        name = trial["recipe"]["name"]
        steps = list(trial["recipe"]["steps"])
        try:
            built = build(inputs, steps, inputs.work_dir / "frontier" / str(trial["number"]))
        except Cancelled:
            raise
        except Exception as exc:
            problems.append(f"{name}: could not be rebuilt: {exc}")
            continue
        recipe = RecipeSpec(name, tuple(steps))
        produced.append((int(trial["number"]), Produced(recipe, built.artifact, built.reports)))
    if not produced:
        return {}, problems
    report(f"measuring the parent and {len(produced)} frontier variant(s) together")
    parent_m, measured = measure(
        inputs.parent, [p for _, p in produced], inputs.datasets, inputs.settings, _quiet
    )
    stored: dict[int, str] = {}
    for (number, p), metrics in zip(produced, measured, strict=True):
        budget = check_budget(parent_m, metrics, inputs.budget)
        try:
            record = store_variant(repo, blobs, job, p, (metrics, parent_m), budget)
        except ParetoError as exc:
            problems.append(f"{p.recipe.name}: {exc}")
            continue
        stored[number] = record.id
        report(f"{p.recipe.name}: stored {record.id}")
    return stored, problems


def _quiet(fraction: float, message: str, metrics: dict[str, float]) -> None:
    return None
