"""How busy the machine is, from /proc/stat: benches that compare runs on a machine shared
with other work wait for a quiet moment before each run and record what they found."""

from __future__ import annotations

import time


def _jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def busy_share(seconds: float = 2.0) -> float:
    """The share of all CPUs busy over the next `seconds` (0..1)."""
    busy0, total0 = _jiffies()
    time.sleep(seconds)
    busy1, total1 = _jiffies()
    return (busy1 - busy0) / max(1, total1 - total0)


def wait_quiet(max_busy: float, timeout_s: float, window_s: float = 3.0) -> float:
    """Wait (up to `timeout_s`) until the CPUs are less than `max_busy` busy over a window;
    returns the last share measured (above `max_busy` when the wait timed out)."""
    deadline = time.monotonic() + timeout_s
    share = busy_share(window_s)
    while share >= max_busy and time.monotonic() < deadline:
        share = busy_share(window_s)
    return share
