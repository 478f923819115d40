"""Runs one recipe: its steps in order, each in its own work directory.

The pipeline owns what is common to every step: the input-format check (a technique that
cannot take the artifact it is given is FAILED_PRECONDITION, saying which step produced
it), a fresh work directory per step, cancellation between steps, and the step report kept
with the variant. What a step does is the technique's business.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compressors import registry
from compressors.base import Artifact, StepContext, Technique, TechniqueConfig
from pareto_core.errors import Cancelled, FailedPrecondition, Internal


@dataclass(frozen=True)
class Step:
    """A validated recipe step: the technique and its parsed config."""

    technique: Technique
    config: TechniqueConfig

    @property
    def name(self) -> str:
        return self.technique.name


# (step index, step) -> the context the step runs with; its work_dir is created here.
ContextFactory = Callable[[int, Step], StepContext]


def parse_steps(steps: Sequence[dict[str, Any]], where: str = "steps") -> list[Step]:
    """`[{"technique": name, "config": {...}}, ...]` -> Steps (InvalidArgument naming the field)."""
    parsed = []
    for j, step in enumerate(steps):
        name = step.get("technique", "")
        config = registry.parse_config(name, step.get("config"), where=f"{where}[{j}].config")
        parsed.append(Step(registry.get(name), config))
    return parsed


def run_recipe(
    parent: Artifact, steps: Sequence[Step], ctx_factory: ContextFactory
) -> tuple[Artifact, list[dict[str, Any]]]:
    """Apply `steps` to `parent` in order; returns the last artifact and one report per step.

    Raises Cancelled when the context says so between steps, FailedPrecondition when a
    step cannot take the artifact it is given, and whatever a technique raises.
    """
    artifact = parent
    reports: list[dict[str, Any]] = []
    for index, step in enumerate(steps):
        ctx = ctx_factory(index, step)
        if ctx.is_cancelled():
            raise Cancelled(f"cancelled before step {index + 1} ({step.name})")
        _check_format(index, step, artifact)
        ctx.work_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        result = step.technique.apply(artifact, step.config, ctx)
        _check_result(index, step, result.artifact)
        reports.append(_step_report(index, step, result.report, time.monotonic() - started))
        artifact = result.artifact
    return artifact, reports


def _check_format(index: int, step: Step, artifact: Artifact) -> None:
    accepted = step.technique.input_formats
    if artifact.format in accepted:
        return
    source = "the uploaded model" if index == 0 else f"the output of step {index}"
    raise FailedPrecondition(
        f"step {index + 1} ({step.name}) takes {' or '.join(sorted(accepted))} models, but "
        f"{source} is {artifact.format!r}"
    )


def _check_result(index: int, step: Step, artifact: Artifact) -> None:
    if not Path(artifact.path).is_file():
        raise Internal(
            f"step {index + 1} ({step.name}) returned {artifact.path}, which is not a file"
        )


def _step_report(index: int, step: Step, report: dict[str, Any], seconds: float) -> dict[str, Any]:
    try:
        json.dumps(report)
    except (TypeError, ValueError) as exc:
        raise Internal(f"step {index + 1} ({step.name}) report is not JSON: {exc}") from None
    return {
        "step": index + 1,
        "technique": step.name,
        "config": registry.config_to_json(step.name, step.config),
        "seconds": round(seconds, 3),
        "report": report,
    }
