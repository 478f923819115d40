"""The name and id patterns of service/names.py, and how a bad value is reported."""

from __future__ import annotations

import pytest

from pareto_core import names
from pareto_core.errors import InvalidArgument


@pytest.mark.parametrize(
    ("check", "good", "bad"),
    [
        (
            names.model_name,
            ["a", "digits", "A-b_c.9", "x" * 128],
            ["", "-a", ".a", "a/b", "x" * 129],
        ),
        (names.dataset_name, ["digits-calib"], ["a b", "é", "a\x00"]),
        (names.job_id, ["job-0123456789ab"], ["job-", "job-XYZ123", "var-0123456789", "1"]),
        (names.variant_id, ["var-0123456789"], ["var-01234", "var-0123456789AB", "job-0123456"]),
        (names.serving_name, ["digits", "digits.var-0123456789"], ["", "digits/var", "../x"]),
    ],
)
def test_patterns(check, good, bad):
    for value in good:
        assert check(value) == value
    for value in bad:
        with pytest.raises(InvalidArgument, match="must match"):
            check(value)


def test_message_names_field_and_pattern_and_cuts_the_value():
    with pytest.raises(InvalidArgument) as err:
        names.model_name("/" * 100_000, "header.name")
    message = str(err.value)
    assert message.startswith("header.name must match [a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}, got '//")
    assert message.endswith("...(truncated)") and len(message) < 200


def test_optional_and_model_version():
    assert names.check_optional(names.MODEL_NAME, "", "model") == ""
    assert names.serving("m", "", ("n", "v")) == ("m", "")
    for version in ("1", "12", "var-0123456789"):
        assert names.serving("m", version, ("n", "v")) == ("m", version)
    with pytest.raises(InvalidArgument, match=r"^v must match"):
        names.serving("m", "latest", ("n", "v"))
    with pytest.raises(InvalidArgument, match="must match"):
        names.model_name(None)
