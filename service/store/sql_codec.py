"""Column codecs of both metadata backends (SQLite, PostgreSQL): JSON, tensor specs,
timestamps.

Timestamps are stored as ISO 8601 text in UTC and come back as aware datetimes. Rows are
ordered by their integer `seq` column, never by these strings.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pareto_core.tensors import TensorSpec
from service.store.records import RecipeSpec


def now() -> datetime:
    return datetime.now(UTC)


def time_to_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def time_from_text(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def to_json(value: Any) -> str:
    """Deterministic JSON (sorted keys); tuples become lists."""
    return json.dumps(value, sort_keys=True)


def from_json(text: str) -> Any:
    return json.loads(text)


def specs_to_json(specs: tuple[TensorSpec, ...]) -> str:
    return json.dumps([s.to_json() for s in specs])


def specs_from_json(text: str) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec.from_json(d) for d in json.loads(text))


def recipe_to_data(recipe: RecipeSpec) -> dict[str, Any]:
    return {"name": recipe.name, "steps": [dict(step) for step in recipe.steps]}


def recipe_from_data(data: dict[str, Any]) -> RecipeSpec:
    return RecipeSpec(name=data["name"], steps=tuple(data["steps"]))
