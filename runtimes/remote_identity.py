"""Is the remote model the one we were asked to serve? (`triton_remote`'s load check.)

A remote server may serve another model under the same name. Two checks, both at load:
the remote's signature (input and output names, datatypes, shapes: a dynamic dim on
either side matches any size) must be the stored model's; and when the remote's model
config names the sha256 of its file (parameter `pareto_sha256`, which a Pareto gateway
reports), it must be the stored model's sha256. Either mismatch is FAILED_PRECONDITION.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pareto_core.errors import FailedPrecondition
from pareto_core.tensors import Signature, TensorSpec

SHA256_PARAMETER = "pareto_sha256"


def check_signature(expected: Signature, remote: Signature, what: str) -> None:
    problems = [
        *_differences("input", expected.inputs, remote.inputs),
        *_differences("output", expected.outputs, remote.outputs),
    ]
    if problems:
        raise FailedPrecondition(f"{what} is not the model to serve: " + "; ".join(problems[:5]))


def check_sha256(expected: str, remote_config: Mapping[str, Any], what: str) -> None:
    """`remote_config`: the remote's ModelConfig as JSON (tritonclient's as_json)."""
    parameter = remote_config.get("parameters", {}).get(SHA256_PARAMETER, {})
    remote = parameter.get("string_value", "") if isinstance(parameter, Mapping) else ""
    if expected and remote and remote != expected:
        raise FailedPrecondition(
            f"{what} is another model: its file has sha256 {remote[:12]}..., the stored "
            f"model {expected[:12]}..."
        )


def _differences(
    kind: str, expected: tuple[TensorSpec, ...], remote: tuple[TensorSpec, ...]
) -> list[str]:
    ours = {t.name: t for t in expected}
    theirs = {t.name: t for t in remote}
    if set(ours) != set(theirs):
        return [f"{kind}s are {sorted(theirs)} there, {sorted(ours)} here"]
    return [
        f"{kind} {name!r} is {theirs[name].datatype}{list(theirs[name].shape)} there, "
        f"{spec.datatype}{list(spec.shape)} here"
        for name, spec in ours.items()
        if not _same(spec, theirs[name])
    ]


def _same(a: TensorSpec, b: TensorSpec) -> bool:
    if a.datatype != b.datatype or len(a.shape) != len(b.shape):
        return False
    return all(x == y or -1 in (x, y) for x, y in zip(a.shape, b.shape, strict=True))
