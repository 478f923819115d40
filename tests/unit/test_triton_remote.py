"""triton_remote: retries on UNAVAILABLE only, error mapping, option validation (the
network side is tested against a second Pareto process in tests/integration)."""

from __future__ import annotations

import pytest
from tritonclient.utils import InferenceServerException

from pareto_core.errors import FailedPrecondition, InvalidArgument, Unavailable
from runtimes.triton_remote import TritonRemote, call_with_retries


def _failing(statuses: list[str]):
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= len(statuses):
            raise InferenceServerException("boom", status=statuses[len(calls) - 1])
        return "ok"

    return call, calls


def test_unavailable_is_retried_with_growing_pauses():
    call, calls = _failing(["StatusCode.UNAVAILABLE", "StatusCode.UNAVAILABLE"])
    pauses: list[float] = []
    assert call_with_retries(call, 2, 0.1, "x", sleep=pauses.append) == "ok"
    assert len(calls) == 3 and pauses == [0.1, 0.2]


def test_unavailable_after_all_retries_is_unavailable():
    call, calls = _failing(["StatusCode.UNAVAILABLE"] * 5)
    with pytest.raises(Unavailable, match="triton_remote: model m: boom"):
        call_with_retries(call, 2, 0.0, "model m", sleep=lambda _: None)
    assert len(calls) == 3


@pytest.mark.parametrize(
    ("status", "error"),
    [("StatusCode.INVALID_ARGUMENT", InvalidArgument), ("StatusCode.DEADLINE_EXCEEDED", Exception)],
)
def test_other_errors_are_not_retried(status, error):
    call, calls = _failing([status])
    with pytest.raises(error):
        call_with_retries(call, 3, 0.0, "x", sleep=lambda _: None)
    assert len(calls) == 1


def test_load_needs_url_and_checks_options(tmp_path):
    runtime = TritonRemote()
    assert runtime.available() is None and not runtime.auto_select
    with pytest.raises(FailedPrecondition, match="url"):
        runtime.load(tmp_path, {"model_name": "m"})
    with pytest.raises(InvalidArgument, match="unknown triton_remote option 'retry'"):
        runtime.load(tmp_path, {"retry": 3})
    with pytest.raises(InvalidArgument, match="'timeout_s'"):
        runtime.load(tmp_path, {"url": "h:1", "model_name": "m", "timeout_s": 0})
