"""The in-flight limit on inference, shared by every front end (gRPC and REST).

PARETO_MAX_INFLIGHT_REQUESTS bounds the inference calls admitted at once, whichever
protocol they came by: each front end asks `try_admit` when a call arrives (before it waits
for a thread) and calls `release` when it is done; a call past the limit is answered
RESOURCE_EXHAUSTED at once (`refusal`). Counted in `pareto_inference_in_flight` and
`pareto_inference_rejected_total{reason="max_inflight"}`.
"""

from __future__ import annotations

import threading

from pareto_core.errors import ResourceExhausted
from service import metrics
from service.serving.executor import UNRESOLVED_LABELS

REASON = "max_inflight"


class InflightLimit:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._count = 0
        self._lock = threading.Lock()
        metrics.INFERENCE_IN_FLIGHT.set(0)

    @property
    def in_flight(self) -> int:
        return self._count

    def try_admit(self) -> bool:
        """Take a place; False (and the refusal counted) when all are taken."""
        with self._lock:
            admitted = self._count < self.limit
            if admitted:
                self._count += 1
                metrics.INFERENCE_IN_FLIGHT.set(self._count)
        if not admitted:
            metrics.INFERENCE_REJECTED.labels(REASON).inc()
            metrics.INFERENCE_REQUESTS.labels(*UNRESOLVED_LABELS, "RESOURCE_EXHAUSTED").inc()
        return admitted

    def release(self) -> None:
        with self._lock:
            self._count -= 1
            metrics.INFERENCE_IN_FLIGHT.set(self._count)

    def refusal(self) -> ResourceExhausted:
        """What a call past the limit is answered."""
        return ResourceExhausted(
            f"too many inference requests in flight (limit {self.limit}, "
            "PARETO_MAX_INFLIGHT_REQUESTS); retry later"
        )
