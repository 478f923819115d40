"""Whether one target can stand in for another: the same inputs and outputs."""

from __future__ import annotations

from pareto_core.tensors import Signature, TensorSpec


def signature_mismatch(a: Signature, b: Signature) -> str:
    """What differs when `b` does not take and give what `a` does; "" when it does."""
    for kind, left, right in (("input", a.inputs, b.inputs), ("output", a.outputs, b.outputs)):
        if [t.name for t in left] != [t.name for t in right]:
            names_a, names_b = [t.name for t in left], [t.name for t in right]
            return f"{kind}s {names_a} vs {names_b}"
        for x, y in zip(left, right, strict=True):
            if not _compatible(x, y):
                return f"{kind} {x.name!r} is {_spec(x)} vs {_spec(y)}"
    return ""


def _compatible(x: TensorSpec, y: TensorSpec) -> bool:
    if x.datatype != y.datatype or len(x.shape) != len(y.shape):
        return False
    return all(p == q or p < 0 or q < 0 for p, q in zip(x.shape, y.shape, strict=True))


def _spec(t: TensorSpec) -> str:
    return f"{t.datatype}{list(t.shape)}"
