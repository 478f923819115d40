"""The Ray job driver tries a failed connection again (Ray Client's per-driver server can
fail to start on a loaded head; a real head is used in tests/integration/test_ray_jobs.py,
which cannot make that failure happen on demand: `init` here is a stand-in for ray.init)."""

from __future__ import annotations

import pytest

from service.ray_driver import connect_with_retries


class FlakyInit:
    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error = failures, error
        self.calls = self.resets = 0

    def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error

    def reset(self) -> None:
        self.resets += 1


def test_a_failed_connection_is_tried_again_until_it_succeeds() -> None:
    init = FlakyInit(2, ConnectionAbortedError("Initialization failure from server"))
    connect_with_retries(init, init.reset, attempts=3, pause_s=0.001)
    assert (init.calls, init.resets) == (3, 2)


def test_the_last_connection_error_propagates_after_the_last_attempt() -> None:
    init = FlakyInit(10**9, ConnectionError("Starting Ray client server failed"))
    with pytest.raises(ConnectionError, match="Starting Ray client server failed"):
        connect_with_retries(init, init.reset, attempts=3, pause_s=0.001)
    assert (init.calls, init.resets) == (3, 2)


def test_other_errors_are_not_retried() -> None:
    init = FlakyInit(1, ValueError("bad address"))
    with pytest.raises(ValueError, match="bad address"):
        connect_with_retries(init, init.reset, attempts=3, pause_s=0.001)
    assert (init.calls, init.resets) == (1, 0)
