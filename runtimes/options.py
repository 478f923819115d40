"""Runtime options: a per-runtime pydantic model, validated with messages naming the field."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from pareto_core.errors import InvalidArgument

OptionsT = TypeVar("OptionsT", bound=BaseModel)


def parse_options(
    runtime: str, model: type[OptionsT], options: dict[str, Any] | BaseModel | None
) -> OptionsT:
    """`options` validated as `model`; InvalidArgument names each bad field and the value."""
    if isinstance(options, model):
        return options
    if options is not None and not isinstance(options, dict):
        raise InvalidArgument(f"{runtime} options must be a mapping, got {type(options).__name__}")
    try:
        return model.model_validate(options or {})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            if error["type"] == "extra_forbidden":
                known = sorted(model.model_fields)
                problems.append(f"unknown {runtime} option {field!r}; known options: {known}")
            else:
                problems.append(
                    f"{runtime} option {field!r}: {error['msg']} (got {error['input']!r})"
                )
        raise InvalidArgument("; ".join(problems)) from None
