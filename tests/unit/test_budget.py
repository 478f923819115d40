"""compressors.measure.budget: validating a quality budget and checking a variant against it."""

from __future__ import annotations

import pytest

from compressors.measure.budget import check_budget, validate_budget
from pareto_core.errors import InvalidArgument

LABELED_PARENT = {"quality": {"accuracy": 0.97, "cosine_mean": 1.0, "top1_agreement": 1.0}}
UNLABELED_PARENT = {"quality": {"cosine_mean": 1.0, "top1_agreement": 1.0}}


def variant(**quality: float) -> dict:
    return {"quality": quality}


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        (
            {"max_accuracy_drop": -0.01},
            r"max_accuracy_drop must be a number in \[0, 1\], got -0.01",
        ),
        ({"min_cosine": 1.5}, r"min_cosine .* got 1.5"),
        ({"min_cosine": -1.01}, r"min_cosine"),
        ({"min_top1_agreement": 1.2}, r"min_top1_agreement .* got 1.2"),
        ({"min_top1_agreement": True}, r"min_top1_agreement"),
        ({"min_cosine": "high"}, r"min_cosine .* got 'high'"),
        ({"keep_failing": "yes"}, r"keep_failing must be a boolean"),
        ({"max_loss": 1.0}, r"unknown fields \['max_loss'\]"),
    ],
)
def test_nonsense_budgets_are_invalid_arguments(budget, message):
    with pytest.raises(InvalidArgument, match=message):
        validate_budget(budget)


@pytest.mark.parametrize(
    "budget",
    [
        {},
        {"max_accuracy_drop": 0.005, "keep_failing": True},
        {"min_cosine": -1, "min_top1_agreement": 0},
        {"min_cosine": None, "max_accuracy_drop": 0},
    ],
)
def test_sane_budgets_are_accepted(budget):
    validate_budget(budget)


def test_default_with_labels_is_one_point_of_accuracy():
    ok, reason = check_budget(LABELED_PARENT, variant(accuracy=0.965, cosine_mean=0.5), {})
    assert ok and "max_accuracy_drop 0.01" in reason
    ok, reason = check_budget(LABELED_PARENT, variant(accuracy=0.95, cosine_mean=1.0), {})
    assert not ok
    assert "accuracy drop 0.0200 (0.9700 -> 0.9500) exceeds max_accuracy_drop 0.01" in reason


def test_default_without_labels_is_a_mean_cosine_of_099():
    ok, reason = check_budget(UNLABELED_PARENT, variant(cosine_mean=0.985), {})
    assert not ok and reason.startswith("cosine_mean 0.9850 is below min_cosine 0.99 (mean cosine")
    assert check_budget(UNLABELED_PARENT, variant(cosine_mean=0.99), {})[0]


def test_a_failing_check_says_how_to_relax_it_or_change_the_recipe():
    ok, reason = check_budget(UNLABELED_PARENT, variant(cosine_mean=0.98765), {"min_cosine": 0.99})
    assert not ok
    assert "lower quality_budget.min_cosine to 0.9876 or set quality_budget.keep_failing" in reason
    assert "milder recipe" in reason
    assert check_budget(UNLABELED_PARENT, variant(cosine_mean=0.98765), {"min_cosine": 0.9876})[0]
    ok, reason = check_budget(LABELED_PARENT, variant(accuracy=0.95), {})
    assert "raise quality_budget.max_accuracy_drop to 0.02 or" in reason
    assert check_budget(LABELED_PARENT, variant(accuracy=0.95), {"max_accuracy_drop": 0.02})[0]


def test_a_token_level_failure_names_the_pooled_and_neighbour_figures():
    measured = variant(cosine_mean=0.977, pooled_cosine_mean=0.993, nn_top1_agreement=0.92)
    ok, reason = check_budget(UNLABELED_PARENT, measured, {})
    assert not ok and reason.startswith("cosine_mean 0.9770 is below min_cosine 0.99")
    assert "real tokens" in reason and "pooled_cosine_mean 0.9930" in reason
    assert "nearest-neighbour agreement 0.920" in reason


def test_set_limits_are_all_checked_and_every_failure_named():
    budget = {"max_accuracy_drop": 0.005, "min_top1_agreement": 0.99, "keep_failing": False}
    measured = variant(accuracy=0.96, top1_agreement=0.95, cosine_mean=0.999)
    ok, reason = check_budget(LABELED_PARENT, measured, budget)
    assert not ok
    assert "exceeds max_accuracy_drop 0.005" in reason
    assert "top1_agreement 0.9500 is below min_top1_agreement 0.99" in reason
    ok, reason = check_budget(LABELED_PARENT, variant(accuracy=0.97, top1_agreement=1.0), budget)
    assert ok and "top1_agreement 1.0000 >= min_top1_agreement 0.99" in reason


def test_an_accuracy_budget_without_labels_falls_back_to_the_cosine_default():
    ok, reason = check_budget(UNLABELED_PARENT, variant(cosine_mean=0.9), {"max_accuracy_drop": 0})
    assert not ok and "min_cosine 0.99" in reason


def test_a_limit_on_a_metric_that_was_not_measured_fails_saying_so():
    ok, reason = check_budget(
        UNLABELED_PARENT, variant(cosine_mean=1.0), {"min_top1_agreement": 0.9}
    )
    assert not ok and "top1_agreement was not measured" in reason
