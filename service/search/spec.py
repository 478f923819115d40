"""A search's own settings (pareto.v1.SearchSpec), checked field by field.

Everything here is about the spec alone: objectives, limits, trial budget, sampler. What
needs the model and its datasets (techniques that apply, the batch size against the
model's inputs, the quality budget from the labels) is checked in `service.search.create`.
The normalized spec is a plain JSON-able dict, stored beside the job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pareto_core.errors import InvalidArgument

OBJECTIVES = ("latency_p50", "latency_p99", "size", "compressed_size", "memory")
DEFAULT_OBJECTIVES = ("latency_p50", "size")
LATENCY_OBJECTIVES = ("latency_p50", "latency_p99")
SAMPLER_NAMES = ("tpe", "nsga2", "random")
DEFAULT_TRIALS = 20
MAX_TRIALS = 1000
DEFAULT_MAX_QUALITY_DROP = 0.01
DEFAULT_MAX_STEPS = 2
MAX_PARALLELISM = 64
MAX_BATCH_SIZE = 4096
CONSTRAINT_FIELDS = ("max_quality_drop", "max_latency_ms", "max_size_bytes", "max_memory_bytes")
FIELDS = (
    "objectives",
    "batch_size",
    "constraints",
    "n_trials",
    "timeout_s",
    "techniques",
    "sampler",
    "seed",
    "max_steps",
    "resume_from",
    "parallelism",
)


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgument(f"{field} must be a finite number, got {value!r}")
    return float(value)


def _integer(value: Any, field: str) -> int:
    number = _number(value, field)
    if not number.is_integer():
        raise InvalidArgument(f"{field} must be a whole number, got {value!r}")
    return int(number)


def check_objectives(objectives: Sequence[str]) -> list[str]:
    chosen = list(objectives) or list(DEFAULT_OBJECTIVES)
    for i, name in enumerate(chosen):
        if name not in OBJECTIVES:
            raise InvalidArgument(
                f"search.objectives[{i}]: unknown objective {str(name)[:80]!r}; known: "
                f"{', '.join(OBJECTIVES)} (quality is always maximized; limit it with "
                "search.constraints.max_quality_drop)"
            )
        if name in chosen[:i]:
            raise InvalidArgument(f"search.objectives[{i}]: {name!r} is listed twice")
    return chosen


def check_constraints(constraints: Mapping[str, Any]) -> dict[str, float | int]:
    """Set limits only; each must be a positive number (a drop may be 0: no loss at all)."""
    unknown = sorted(set(constraints) - set(CONSTRAINT_FIELDS))
    if unknown:
        raise InvalidArgument(
            f"search.constraints: unknown fields {unknown}; known: {list(CONSTRAINT_FIELDS)}"
        )
    checked: dict[str, float | int] = {}
    for key in CONSTRAINT_FIELDS:
        if constraints.get(key) is None:
            continue
        field = f"search.constraints.{key}"
        value = _number(constraints[key], field)
        if key == "max_quality_drop":
            if not 0.0 <= value <= 1.0:
                raise InvalidArgument(
                    f"{field} must be in [0, 1] (0.01 = one point of accuracy), got {value:g}"
                )
            checked[key] = value
        elif value <= 0:
            raise InvalidArgument(
                f"{field} must be > 0, got {value:g}: no model can be that small or fast"
            )
        else:
            checked[key] = _integer(value, field) if key.endswith("_bytes") else value
    return checked


def check_budget(n_trials: Any, timeout_s: Any) -> tuple[int, float]:
    trials = _integer(n_trials or 0, "search.n_trials")
    timeout = _number(timeout_s or 0.0, "search.timeout_s")
    if trials < 0 or trials > MAX_TRIALS:
        raise InvalidArgument(f"search.n_trials must be in 1..{MAX_TRIALS}, got {trials}")
    if timeout < 0:
        raise InvalidArgument(f"search.timeout_s must be >= 0 (0 = no limit), got {timeout:g}")
    if trials == 0:
        trials = MAX_TRIALS if timeout > 0 else DEFAULT_TRIALS
    return trials, timeout


def check_options(spec: Mapping[str, Any]) -> dict[str, Any]:
    """sampler, seed, max_steps, parallelism with defaults."""
    sampler = str(spec.get("sampler") or "tpe").lower()
    if sampler not in SAMPLER_NAMES:
        raise InvalidArgument(
            f"search.sampler: unknown sampler {sampler[:40]!r}; known: {', '.join(SAMPLER_NAMES)}"
        )
    seed = _integer(spec.get("seed") or 0, "search.seed")
    if not 0 <= seed < 2**32:
        raise InvalidArgument(f"search.seed must be in [0, 2^32), got {seed}")
    max_steps = _integer(spec.get("max_steps") or DEFAULT_MAX_STEPS, "search.max_steps")
    if max_steps not in (1, 2):
        raise InvalidArgument(f"search.max_steps must be 1 or 2, got {max_steps}")
    parallelism = _integer(spec.get("parallelism") or 1, "search.parallelism")
    if not 1 <= parallelism <= MAX_PARALLELISM:
        raise InvalidArgument(
            f"search.parallelism must be in 1..{MAX_PARALLELISM} (trials at once), "
            f"got {parallelism}"
        )
    return {
        "sampler": sampler,
        "seed": seed,
        "max_steps": max_steps,
        "parallelism": parallelism,
    }


def check_batch_size(value: Any, evaluation_batches: Sequence[int]) -> int:
    batch = _integer(value or 0, "search.batch_size") or min(evaluation_batches, default=1)
    if not 1 <= batch <= MAX_BATCH_SIZE:
        raise InvalidArgument(f"search.batch_size must be in 1..{MAX_BATCH_SIZE}, got {batch}")
    return batch


def check_fields(spec: Mapping[str, Any]) -> None:
    unknown = sorted(set(spec) - set(FIELDS))
    if unknown:
        raise InvalidArgument(f"search: unknown fields {unknown}; known: {list(FIELDS)}")


def uses_memory(spec: Mapping[str, Any]) -> bool:
    """Memory is measured in trials only when the search is asked about it (a fresh child
    process per model and trial is the dearest measurement)."""
    return "memory" in spec["objectives"] or "max_memory_bytes" in spec["constraints"]


def parallelism(spec: Mapping[str, Any]) -> int:
    """Trials run at once (1 for specs stored before the field existed)."""
    return int(spec.get("parallelism") or 1)


def latency_percentile(spec: Mapping[str, Any]) -> str:
    """p50 or p99: the first latency objective's, which the latency limit also uses."""
    first = next((o for o in spec["objectives"] if o in LATENCY_OBJECTIVES), "latency_p50")
    return first.removeprefix("latency_")
