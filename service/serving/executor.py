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

from pareto_core.errors import Internal, ResourceExhausted
from pareto_core.tensors import Signature
from service import metrics
from service.serving.batcher import Timing
from service.serving.loaded_model import LoadedModel
from service.serving.servables import Servable
from service.serving.sessions import SessionManager
from service.serving.statistics import RequestTimes
from service.serving.targets import Target

# Bytes per string of a text input (longer strings are refused; the tokenizer truncates
# the tokens of shorter ones to the model's limit).
MAX_TEXT_BYTES = 64 * 1024

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

    def run(
        self,
        target: Target,
        decode: Decoder,
        counted: bool = True,
        deadline: float | None = None,
    ) -> InferResult:
        """Run one request on `target`, batched with others when its model batches.
        `counted` False leaves the per-model metrics and statistics alone (shadow copies);
        `deadline` (time.monotonic) is when the caller stops waiting."""
        started = time.perf_counter()
        meters: metrics.ModelMeters | None = None
        key = ("", "")

        def count(code: str) -> None:
            if not counted:
                return
            if meters is None:  # failed before a model was resolved
                metrics.INFERENCE_REQUESTS.labels(*UNRESOLVED_LABELS, code).inc()
                return
            meters.requests(code).inc()
            if code != "OK":
                self.sessions.statistics.failed(key, time.perf_counter() - started)

        with metrics.count_outcome(count), self.sessions.acquire(target) as model:
            meters, key = model.meters, model.servable.key
            inputs, wanted = decode(model.signature)
            inputs = _tokenized(model, inputs)
            self._check_size(inputs)
            outputs, timing = model.run(inputs, wanted, deadline, _queued(counted, meters, started))
        if counted:
            self._record(meters, key, started, timing, _rows(inputs))
        return InferResult(model.servable, model.runtime.name, outputs, inputs, wanted)

    def _record(
        self,
        meters: metrics.ModelMeters,
        key: tuple[str, str],
        started: float,
        timing: Timing,
        rows: int,
    ) -> None:
        total = time.perf_counter() - started
        queue = timing.started - started
        meters.duration.observe(total)
        times = RequestTimes(total, queue, timing.prepare_s, timing.run_s, timing.split_s)
        self.sessions.statistics.succeeded(key, rows, times)

    def _check_size(self, inputs: Inputs) -> None:
        size = sum(array.nbytes for array in inputs.values())
        if size > self.max_request_bytes:
            raise ResourceExhausted(
                f"the request's input tensors take {size} bytes, over the limit of "
                f"{self.max_request_bytes} (PARETO_MAX_REQUEST_BYTES); send smaller batches"
            )


def _tokenized(model: LoadedModel, inputs: Inputs) -> Inputs:
    """A request's text input (see kserve_codec.decode_tensors) as the token inputs the
    model takes, tokenized with the model's own tokenizer; other requests as they are."""
    text = model.signature.text
    if text is None or text.name not in inputs:
        return inputs
    if model.text_encoder is None:
        raise Internal(f"model {model.servable.model!r} has a text input but no tokenizer loaded")
    encoded: Inputs = model.text_encoder.encode(list(inputs[text.name]), MAX_TEXT_BYTES, text.name)
    return encoded


def _queued(counted: bool, meters: metrics.ModelMeters, started: float) -> Callable[[], None]:
    """What marks the end of a request's wait: its run begins."""

    def observe() -> None:
        if counted:
            meters.queue.observe(time.perf_counter() - started)

    return observe


def _rows(inputs: Inputs) -> int:
    return int(next(iter(inputs.values())).shape[0]) if inputs else 0
