"""Protocol-neutral inference: resolve the model, validate tensors, run, record metrics.

Servicers for any wire protocol (KServe v2 gRPC today) call this with a `decode` callback
that turns their request into validated numpy inputs once the model's signature is known.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pareto_core.tensors import Signature
from service import metrics
from service.serving.servables import Servable
from service.serving.sessions import SessionManager

if TYPE_CHECKING:
    from service.deployments.manager import DeploymentManager

# Labels used when a request fails before a model is resolved (bounded: never the name asked).
UNRESOLVED_LABELS = ("", "", "")

Inputs = dict[str, np.ndarray]
Decoder = Callable[[Signature], tuple[Inputs, list[str] | None]]


@dataclass(frozen=True)
class InferResult:
    servable: Servable
    runtime: str
    outputs: dict[str, np.ndarray]


class DataPlane:
    def __init__(
        self, sessions: SessionManager, deployments: DeploymentManager | None = None
    ) -> None:
        self.sessions = sessions
        self.deployments = deployments  # endpoints with A/B splits take precedence

    def infer(self, name: str, version: str, decode: Decoder, route_key: str = "") -> InferResult:
        """`route_key` (sticky routing) matters only for deployed endpoints."""
        if self.deployments is not None and self.deployments.serves(name):
            return self.deployments.infer(name, version, route_key, decode)
        started = time.perf_counter()
        labels = UNRESOLVED_LABELS

        def count(code: str) -> None:
            metrics.INFERENCE_REQUESTS.labels(*labels, code).inc()

        with metrics.count_outcome(count), self.sessions.acquire(name, version) as model:
            labels = model.labels
            inputs, wanted = decode(model.signature)
            metrics.INFERENCE_QUEUE_DURATION.labels(*labels).observe(time.perf_counter() - started)
            outputs = model.session.run(inputs, wanted)
        metrics.INFERENCE_DURATION.labels(*labels).observe(time.perf_counter() - started)
        return InferResult(model.servable, model.runtime.name, outputs)

    def model(self, name: str, version: str = "") -> Servable:
        """What (name, version) designates (NotFound if nothing); loads nothing."""
        if self.deployments is not None and self.deployments.serves(name):
            return self.deployments.servable(name, version)
        return self.sessions.resolve(name, version)

    def model_runtime(self, name: str, version: str = "") -> str:
        """The name of the runtime that serves (name, version): a deployment's target's, else
        the model format's default (what a request to the plain model runs on); "" when the
        format has no default runtime."""
        if self.deployments is not None and self.deployments.serves(name):
            return self.deployments.runtime(name, version)
        from pareto_core.errors import ParetoError
        from runtimes import registry

        try:
            return registry.runtime_for_format(self.model(name, version).format).name
        except ParetoError:
            return ""

    def model_ready(self, name: str, version: str = "") -> bool:
        if self.deployments is not None and self.deployments.serves(name):
            return self.deployments.ready(name, version)
        return self.sessions.is_ready(self.model(name, version))

    def load(self, name: str, version: str = "") -> None:
        self.sessions.load(self.model(name, version))

    def unload(self, name: str) -> None:
        self.model(name)  # NotFound for unknown names
        self.sessions.unload(name)
