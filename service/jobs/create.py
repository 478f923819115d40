"""Validates a CreateJob request into a QUEUED JobRecord. Nothing is stored here.

Everything that can be checked without running the job is checked now, so that a job
which starts can only fail for reasons that need the model itself: the model and its
datasets exist and fit together, every technique is known and every config valid (the
message names the field, e.g. `recipes[0].steps[1].config.sparsity`), the first step of
each recipe accepts the model's format, the budget and evaluation settings are sane.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from compressors import registry
from compressors.base import ROLES
from pareto_core.errors import FailedPrecondition, InvalidArgument
from pareto_core.formats import FORMAT_ONNX, FORMAT_TORCH_EXPORT, artifact_format
from service.jobs.references import check_steps_against_job
from service.store.interfaces import Repository
from service.store.records import JobRecord, ModelRecord, RecipeSpec

DEFAULT_RUNTIME = "onnxruntime_cpu"
DEFAULT_BATCH_SIZES = (1,)
DEFAULT_ITERATIONS = 50
MAX_BATCH_SIZE = 4096
MAX_ITERATIONS = 10_000


@dataclass(frozen=True)
class JobRequest:
    """A CreateJob request in plain Python (recipes not validated yet)."""

    model: str
    recipes: Sequence[RecipeSpec]
    model_version: int = 0
    datasets: Mapping[str, str] = field(default_factory=dict)
    quality_budget: Mapping[str, Any] = field(default_factory=dict)
    evaluation: Mapping[str, Any] = field(default_factory=dict)
    # A search instead of recipes (pareto.v1.SearchSpec fields): service.search.create.
    search: Mapping[str, Any] | None = None


def new_job_id() -> str:
    return "job-" + secrets.token_hex(6)


def validate_job(repo: Repository, request: JobRequest) -> JobRecord:
    """The QUEUED JobRecord for `request`, or the first problem as a ParetoError."""
    if not request.model:
        raise InvalidArgument("model is required")
    if request.model_version < 0:
        raise InvalidArgument(
            f"model_version must be >= 0 (0 = latest), got {request.model_version}"
        )
    model = repo.get_model(request.model, request.model_version)
    recipes = validate_recipes(request.recipes, model)
    datasets = validate_datasets(repo, request.datasets, model)

    check_steps_against_job(repo, recipes, model, datasets)
    evaluation = validate_evaluation(request.evaluation)
    _check_evaluation_datasets(evaluation, datasets)
    return JobRecord(
        id=new_job_id(),
        model=model.name,
        model_version=model.version,
        recipes=recipes,
        datasets=datasets,
        quality_budget=validate_quality_budget(request.quality_budget),
        evaluation=evaluation,
    )


def _check_evaluation_datasets(evaluation: Mapping[str, Any], datasets: Mapping[str, str]) -> None:
    """A runtime that quantizes what it runs (edgetpu_tflite) calibrates on the job's own
    calibration dataset (RuntimePreparer.for_job): the job must name one."""
    from runtimes.registry import get_runtime

    runtime = evaluation["runtime"]
    if get_runtime(runtime).needs_calibration and "calibration" not in datasets:
        raise FailedPrecondition(
            f"evaluation.runtime {runtime!r} quantizes the models on a representative "
            "dataset: give the job a calibration dataset (datasets.calibration)"
        )


def validate_recipes(recipes: Sequence[RecipeSpec], model: ModelRecord) -> tuple[RecipeSpec, ...]:
    """Parsed recipes with configs normalised (defaults filled in) and unique names."""
    if not recipes:
        raise InvalidArgument("recipes: at least one recipe is required")
    checked = [_validate_recipe(i, recipe, model) for i, recipe in enumerate(recipes)]
    return _unique_names(checked, [bool(r.name) for r in recipes])


def _validate_recipe(i: int, recipe: RecipeSpec, model: ModelRecord) -> RecipeSpec:
    if not recipe.steps:
        raise InvalidArgument(f"recipes[{i}].steps: at least one step is required")
    steps = []
    for j, step in enumerate(recipe.steps):
        name = str(step.get("technique", ""))
        if not name:
            raise InvalidArgument(f"recipes[{i}].steps[{j}].technique is required")
        config = registry.parse_config(name, step.get("config"), f"recipes[{i}].steps[{j}].config")
        steps.append({"technique": name, "config": config.model_dump(mode="json")})
    _check_first_step_format(i, steps[0]["technique"], model)
    name = recipe.name or "+".join(s["technique"] for s in steps)
    return RecipeSpec(name=name, steps=tuple(steps))


def _check_first_step_format(i: int, technique: str, model: ModelRecord) -> None:
    accepted = registry.get(technique).input_formats
    fmt = artifact_format(model.format)
    if fmt in accepted:
        return
    hint = ""
    if FORMAT_TORCH_EXPORT in accepted and fmt == FORMAT_ONNX:
        hint = "; it needs the torch model: upload it as a torch.export archive (.pt2)"
    raise FailedPrecondition(
        f"recipes[{i}].steps[0]: {technique} takes {' or '.join(sorted(accepted))} models, "
        f"but model {model.name!r} version {model.version} is {model.format!r}{hint}"
    )


def _unique_names(recipes: list[RecipeSpec], explicit: list[bool]) -> tuple[RecipeSpec, ...]:
    """Explicit duplicate names are an error; default names get "#2", "#3", ..."""
    seen: dict[str, int] = {}
    named = []
    for i, (recipe, given) in enumerate(zip(recipes, explicit, strict=True)):
        name = recipe.name
        if name in seen and given:
            raise InvalidArgument(
                f"recipes[{i}].name {name!r} is also the name of recipes[{seen[name]}]; "
                "names must be unique within a job"
            )
        n = 2
        while name in seen:
            name, n = f"{recipe.name}#{n}", n + 1
        seen[name] = i
        named.append(RecipeSpec(name=name, steps=recipe.steps))
    return tuple(named)


def validate_datasets(
    repo: Repository, datasets: Mapping[str, str], model: ModelRecord
) -> dict[str, str]:
    from service.catalog.datasets import check_dataset_matches

    for role, name in datasets.items():
        if role not in ROLES:
            raise InvalidArgument(f"datasets: unknown role {role!r}; roles: {', '.join(ROLES)}")
        if not name:
            raise InvalidArgument(f"datasets[{role!r}]: a dataset name is required")
        check_dataset_matches(repo.get_dataset(name), model.signature, role)
    return dict(datasets)


def validate_quality_budget(budget: Mapping[str, Any]) -> dict[str, Any]:
    from compressors.measure.budget import validate_budget

    checked = dict(budget)
    validate_budget(checked)
    return checked


def validate_evaluation(evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """EvaluationSettings with defaults filled in: batch_sizes, iterations, runtime."""
    from runtimes.registry import get_runtime

    unknown = set(evaluation) - {"batch_sizes", "iterations", "runtime"}
    if unknown:
        raise InvalidArgument(f"evaluation: unknown fields {sorted(unknown)}")
    batch_sizes = [int(b) for b in evaluation.get("batch_sizes") or DEFAULT_BATCH_SIZES]
    for k, b in enumerate(batch_sizes):
        if not 1 <= b <= MAX_BATCH_SIZE:
            raise InvalidArgument(
                f"evaluation.batch_sizes[{k}] must be in 1..{MAX_BATCH_SIZE}, got {b}"
            )
    iterations = int(evaluation.get("iterations") or DEFAULT_ITERATIONS)
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise InvalidArgument(
            f"evaluation.iterations must be in 1..{MAX_ITERATIONS}, got {iterations}"
        )
    runtime = str(evaluation.get("runtime") or DEFAULT_RUNTIME)
    try:
        get_runtime(runtime)
    except InvalidArgument as exc:
        raise InvalidArgument(f"evaluation.runtime: {exc}") from None
    return {
        "batch_sizes": sorted(set(batch_sizes)),
        "iterations": iterations,
        "runtime": runtime,
    }
