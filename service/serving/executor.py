"""The one place an inference runs: acquire the target's session, decode the request
against its signature, time it, run it, count it.

Every request goes through `Executor.run`, whether it names a model or a deployed
endpoint (which chooses the target first), and so do shadow copies (uncounted here: the
deployment counts them as its own).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pareto_core.errors import ResourceExhausted
from pareto_core.tensors import Signature
from service import metrics
from service.serving.servables import Servable
from service.serving.sessions import SessionManager
from service.serving.targets import Target

# Labels used when a request fails before a model is resolved (bounded: never the name asked).
UNRESOLVED_LABELS = ("", "", "")

Inputs = dict[str, np.ndarray]
# signature -> (validated inputs, the outputs asked for or None for all)
Decoder = Callable[[Signature], tuple[Inputs, list[str] | None]]


@dataclass(frozen=True)
class InferResult:
    servable: Servable
    runtime: str
    outputs: dict[str, np.ndarray]
    inputs: Inputs  # as decoded: what a shadow copy of the request runs on
    wanted: list[str] | None


class Executor:
    def __init__(self, sessions: SessionManager, max_request_bytes: int = 1 << 62) -> None:
        self.sessions = sessions
        self.max_request_bytes = max_request_bytes

    def run(self, target: Target, decode: Decoder, counted: bool = True) -> InferResult:
        """Run one request on `target`. `counted` False leaves the per-model metrics alone
        (shadow copies)."""
        started = time.perf_counter()
        labels = UNRESOLVED_LABELS

        def count(code: str) -> None:
            if counted:
                metrics.INFERENCE_REQUESTS.labels(*labels, code).inc()

        with metrics.count_outcome(count), self.sessions.acquire(target) as model:
            labels = model.labels
            inputs, wanted = decode(model.signature)
            self._check_size(inputs)
            if counted:
                metrics.INFERENCE_QUEUE_DURATION.labels(*labels).observe(
                    time.perf_counter() - started
                )
            outputs = model.session.run(inputs, wanted)
        if counted:
            metrics.INFERENCE_DURATION.labels(*labels).observe(time.perf_counter() - started)
        return InferResult(model.servable, model.runtime.name, outputs, inputs, wanted)

    def _check_size(self, inputs: Inputs) -> None:
        size = sum(array.nbytes for array in inputs.values())
        if size > self.max_request_bytes:
            raise ResourceExhausted(
                f"the request's input tensors take {size} bytes, over the limit of "
                f"{self.max_request_bytes} (PARETO_MAX_REQUEST_BYTES); send smaller batches"
            )
