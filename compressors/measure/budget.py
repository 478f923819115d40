"""The job's quality budget (pareto.v1.QualityBudget): validated at CreateJob, checked per variant.

Keys: `max_accuracy_drop` (accuracy points as a fraction, 0.005 = 0.5 pp; checked when both
the parent and the variant have an accuracy, i.e. the evaluation data has labels),
`min_cosine` (mean cosine of the variant's outputs to the parent's), `min_top1_agreement`
(same argmax as the parent), and `keep_failing` (store a failing variant anyway; the runner
reads it, it is no limit). With no limit set, or none that the measurements allow checking,
the default applies: an accuracy drop of at most 1 pp when there are labels, else a mean
cosine of at least 0.99. For a token-level output, `cosine_mean` is measured on the real
tokens of the attention mask (see `compressors.measure.quality`).

A failing check says which measure failed, its value and the limit, what the measure is,
and how to change the outcome: the limit that would accept the variant, `keep_failing`,
or a milder recipe; where another measure tells more (the pooled sentence embedding of a
token-level output), its value too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from pareto_core.errors import InvalidArgument

MAX_ACCURACY_DROP = "max_accuracy_drop"
MIN_COSINE = "min_cosine"
MIN_TOP1_AGREEMENT = "min_top1_agreement"
KEEP_FAILING = "keep_failing"
LIMITS = (MAX_ACCURACY_DROP, MIN_COSINE, MIN_TOP1_AGREEMENT)

DEFAULT_MAX_ACCURACY_DROP = 0.01
DEFAULT_MIN_COSINE = 0.99

# Allowed range of each limit (inclusive).
_RANGES: dict[str, tuple[float, float]] = {
    MAX_ACCURACY_DROP: (0.0, 1.0),
    MIN_COSINE: (-1.0, 1.0),
    MIN_TOP1_AGREEMENT: (0.0, 1.0),
}
# Measured values are compared with this slack, so 0.99 == 0.99 passes despite rounding.
_EPS = 1e-9
_DIGITS = 1e4  # limits suggested in messages: 4 decimals, rounded towards accepting
_MILDER = "to meet it, try a milder recipe (more bits, fewer layers quantized or pruned)"
_WHAT = {
    "cosine_mean": "mean cosine of the variant's outputs to the parent's on the evaluation inputs",
    "top1_agreement": "share of samples with the parent's top-1 class",
}


def validate_budget(budget: Mapping[str, Any]) -> None:
    """InvalidArgument naming the key when a budget makes no sense; unset keys may be None."""
    known = (*LIMITS, KEEP_FAILING)
    unknown = sorted(set(budget) - set(known))
    if unknown:
        raise InvalidArgument(f"quality_budget: unknown fields {unknown}; known: {list(known)}")
    keep = budget.get(KEEP_FAILING)
    if keep is not None and not isinstance(keep, bool):
        raise InvalidArgument(f"quality_budget.{KEEP_FAILING} must be a boolean, got {keep!r}")
    for key in LIMITS:
        value = budget.get(key)
        if value is None:
            continue
        low, high = _RANGES[key]
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        if number is None or not low <= number <= high:
            raise InvalidArgument(
                f"quality_budget.{key} must be a number in [{low:g}, {high:g}], got {value!r}"
            )


def _limits(parent_q: Mapping[str, float], variant_q: Mapping[str, float], budget: Mapping) -> dict:
    """The limits to check: those set and checkable, else the default one."""
    set_limits = {k: float(budget[k]) for k in LIMITS if budget.get(k) is not None}
    has_accuracy = "accuracy" in parent_q and "accuracy" in variant_q
    if not has_accuracy:
        set_limits.pop(MAX_ACCURACY_DROP, None)
    if set_limits:
        return set_limits
    if has_accuracy:
        return {MAX_ACCURACY_DROP: DEFAULT_MAX_ACCURACY_DROP}
    return {MIN_COSINE: DEFAULT_MIN_COSINE}


def _check_drop(parent_q: Mapping, variant_q: Mapping, limit: float) -> tuple[bool, str]:
    before, after = parent_q["accuracy"], variant_q["accuracy"]
    drop = before - after
    text = f"accuracy drop {drop:.4f} ({before:.4f} -> {after:.4f})"
    if drop > limit + _EPS:
        accept = math.ceil((drop - _EPS) * _DIGITS) / _DIGITS
        return False, f"{text} exceeds {MAX_ACCURACY_DROP} {limit:g}; " + _how(
            MAX_ACCURACY_DROP, f"raise quality_budget.{MAX_ACCURACY_DROP} to {accept:g}"
        )
    return True, f"{text} <= {MAX_ACCURACY_DROP} {limit:g}"


def _check_min(metric: str, key: str) -> Callable[[Mapping, Mapping, float], tuple[bool, str]]:
    def check(_parent_q: Mapping, variant_q: Mapping, limit: float) -> tuple[bool, str]:
        if metric not in variant_q:
            measured = ", ".join(sorted(variant_q)) or "nothing"
            return False, (
                f"{metric} was not measured for this model, so {key} cannot hold "
                f"(measured: {measured}); budget on a measured figure instead"
            )
        value = variant_q[metric]
        if value < limit - _EPS:
            accept = math.floor((value + _EPS) * _DIGITS) / _DIGITS
            return False, (
                f"{metric} {value:.4f} is below {key} {limit:g} ({_what(metric, variant_q)}); "
                + _how(key, f"lower quality_budget.{key} to {accept:g}")
            )
        return True, f"{metric} {value:.4f} >= {key} {limit:g}"

    return check


def _how(key: str, relax: str) -> str:
    return f"to accept it, {relax} or set quality_budget.keep_failing: true; {_MILDER}"


def _what(metric: str, variant_q: Mapping[str, float]) -> str:
    """What `metric` measures, with the figures that put it in context."""
    text = _WHAT.get(metric, metric)
    if metric == "cosine_mean" and "pooled_cosine_mean" in variant_q:
        pooled = variant_q["pooled_cosine_mean"]
        text += (
            f", on the real tokens of a token-level output; its mask-pooled sentence "
            f"embeddings score pooled_cosine_mean {pooled:.4f}"
        )
    if "nn_top1_agreement" in variant_q:
        text += f"; nearest-neighbour agreement {variant_q['nn_top1_agreement']:.3f}"
    return text


_CHECKS = {
    MAX_ACCURACY_DROP: _check_drop,
    MIN_COSINE: _check_min("cosine_mean", MIN_COSINE),
    MIN_TOP1_AGREEMENT: _check_min("top1_agreement", MIN_TOP1_AGREEMENT),
}


def check_budget(
    parent_m: Mapping[str, Any], variant_m: Mapping[str, Any], budget: Mapping[str, Any]
) -> tuple[bool, str]:
    """(ok, reason) for a variant's Measurement against its parent's, measured in one run.

    The reason names each checked metric, its limit and the measured value: the failing
    checks when not ok, else every check that passed.
    """
    parent_q, variant_q = parent_m.get("quality", {}), variant_m.get("quality", {})
    results = [
        _CHECKS[key](parent_q, variant_q, limit)
        for key, limit in _limits(parent_q, variant_q, budget).items()
    ]
    failed = [text for ok, text in results if not ok]
    if failed:
        return False, "; ".join(failed)
    return True, "; ".join(text for _, text in results)
