"""The one place that says what a valid name or id looks like.

Every name or id a caller sends (upload and dataset names, model names in requests, job
and variant ids, KServe model names) is checked here before it reaches the store. A bad
one is INVALID_ARGUMENT naming the field and the pattern; the value is echoed shortened,
so a megabyte of garbage never travels back in a status message.
"""

from __future__ import annotations

import re

from pareto_core.errors import InvalidArgument

MODEL_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")
DATASET_NAME = MODEL_NAME
VARIANT_ID = re.compile(r"var-[0-9a-f]{6,32}")
JOB_ID = re.compile(r"job-[0-9a-f]{6,32}")
# A KServe model name: a model name, or a variant's own name `MODEL.var-<hex>`.
SERVING_NAME = re.compile(MODEL_NAME.pattern + r"(\." + VARIANT_ID.pattern + ")?")
# A KServe model_version: "" (latest), a version number or a variant id.
MODEL_VERSION = re.compile(r"[0-9]{1,9}|" + VARIANT_ID.pattern)

_ECHO_CHARS = 80


def shown(value: object) -> str:
    """`value` for an error message: repr'd and cut to a bounded length."""
    text = repr(value)
    return text if len(text) <= _ECHO_CHARS else text[:_ECHO_CHARS] + "...(truncated)"


def check(pattern: re.Pattern[str], value: object, field: str) -> str:
    """`value` if it fully matches `pattern`, else InvalidArgument naming `field`."""
    if isinstance(value, str) and pattern.fullmatch(value):
        return value
    raise InvalidArgument(f"{field} must match {pattern.pattern}, got {shown(value)}")


def check_optional(pattern: re.Pattern[str], value: str, field: str) -> str:
    """Like `check`, but "" (the field left out: e.g. no filter) passes."""
    return value if value == "" else check(pattern, value, field)


def model_name(value: object, field: str = "name") -> str:
    return check(MODEL_NAME, value, field)


def dataset_name(value: object, field: str = "name") -> str:
    return check(DATASET_NAME, value, field)


def variant_id(value: object, field: str = "id") -> str:
    return check(VARIANT_ID, value, field)


def job_id(value: object, field: str = "id") -> str:
    return check(JOB_ID, value, field)


def serving_name(value: object, field: str = "model_name") -> str:
    return check(SERVING_NAME, value, field)


def serving(name: object, version: str, fields: tuple[str, str]) -> tuple[str, str]:
    """A KServe (model name, model_version) pair, both checked; `fields` names them."""
    return serving_name(name, fields[0]), check_optional(MODEL_VERSION, version, fields[1])
