"""Protocol-neutral inference: resolve the model, validate tensors, run, record metrics.

Servicers for any wire protocol (KServe v2 gRPC today) call this with a `decode` callback
that turns their request into validated numpy inputs once the model's signature is known.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from runtimes.base import Signature
from service import metrics
from service.errors import ParetoError
from service.sessions import SessionManager, parse_version
from service.store.repository import ModelRecord

# Labels used when a request fails before a model is resolved (bounded: never the name asked).
UNRESOLVED_LABELS = ("", "", "")

Inputs = dict[str, np.ndarray]
Decoder = Callable[[Signature], tuple[Inputs, list[str] | None]]


@dataclass(frozen=True)
class InferResult:
    record: ModelRecord
    runtime: str
    outputs: dict[str, np.ndarray]


class DataPlane:
    def __init__(self, sessions: SessionManager) -> None:
        self.sessions = sessions

    def infer(self, name: str, version_text: str, decode: Decoder) -> InferResult:
        started = time.perf_counter()
        labels, code = UNRESOLVED_LABELS, "OK"
        try:
            with self.sessions.acquire(name, parse_version(version_text)) as model:
                labels = model.labels
                inputs, wanted = decode(model.signature)
                metrics.INFERENCE_QUEUE_DURATION.labels(*labels).observe(
                    time.perf_counter() - started
                )
                outputs = model.session.run(inputs, wanted)
            metrics.INFERENCE_DURATION.labels(*labels).observe(time.perf_counter() - started)
            return InferResult(model.record, model.runtime.name, outputs)
        except ParetoError as exc:
            code = exc.code.name
            raise
        except Exception:
            code = "INTERNAL"
            raise
        finally:
            metrics.INFERENCE_REQUESTS.labels(*labels, code).inc()

    def model(self, name: str, version_text: str = "") -> ModelRecord:
        """The stored record (NotFound if absent); does not load anything."""
        return self.sessions.resolve(name, parse_version(version_text))

    def model_ready(self, name: str, version_text: str = "") -> bool:
        record = self.model(name, version_text)
        return self.sessions.is_ready(record.name, record.version)

    def load(self, name: str) -> None:
        self.sessions.load(name)

    def unload(self, name: str) -> None:
        self.model(name)  # NotFound for unknown names
        self.sessions.unload(name)
