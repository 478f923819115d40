"""CreateJob checks of steps against the rest of the job: `Technique.check_job`.

A step may name other uploaded models (a distillation teacher or student) or need labels in
a dataset; the technique says what it needs, this module gives it what CreateJob knows
(the job's model, its datasets and a lookup of uploaded models) in torch-free form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from compressors import registry
from compressors.base import JobInfo, ModelInfo
from pareto_core.formats import artifact_format
from service.store.interfaces import Repository
from service.store.records import ModelRecord, RecipeSpec


def model_info(record: ModelRecord) -> ModelInfo:
    source = record.source.format if record.source is not None else ""
    return ModelInfo(
        record.name, record.version, artifact_format(record.format), record.signature, source
    )


def check_steps_against_job(
    repo: Repository,
    recipes: Sequence[RecipeSpec],
    model: ModelRecord,
    datasets: Mapping[str, str],
) -> None:
    """Run every step's `check_job`; the first problem is raised (naming the step)."""
    info = JobInfo(
        model=model_info(model),
        datasets={
            role: (name, repo.get_dataset(name).has_labels) for role, name in datasets.items()
        },
        find_model=lambda name: model_info(repo.get_model(name, 0)),
    )
    for i, recipe in enumerate(recipes):
        for j, step in enumerate(recipe.steps):
            name = step["technique"]
            config = registry.parse_config(name, step.get("config"))
            registry.get(name).check_job(config, info, f"recipes[{i}].steps[{j}].config")
