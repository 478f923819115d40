"""Protocol-neutral inference: find the route of a name, run, describe, load.

Servicers for any wire protocol (KServe v2 gRPC today) call this with a `decode` callback
that turns their request into validated numpy inputs once the model's signature is known.
A name is either a deployed endpoint (service/deployments, which routes over several
targets) or a model or variant served on its own, which is the route with one target.
Both run through the one `Executor`.
"""

from __future__ import annotations

from typing import Protocol

from pareto_core.errors import ParetoError
from service import metrics
from service.serving.executor import UNRESOLVED_LABELS, Decoder, Executor, InferResult
from service.serving.servables import Servable
from service.serving.sessions import SessionManager
from service.serving.targets import Target


class Route(Protocol):
    """What serves one name."""

    def infer(
        self,
        executor: Executor,
        version: str,
        route_key: str,
        decode: Decoder,
        deadline: float | None = None,
    ) -> InferResult:
        """Choose a target (by `version` pin, sticky `route_key` or weight) and run on it."""

    def describe(self, version: str) -> tuple[Servable, str]:
        """What metadata describes: (servable, runtime name)."""

    def ready_targets(self, version: str) -> list[Target]:
        """The targets that must be loaded for the name to be ready."""


class Routes(Protocol):
    def route(self, name: str) -> Route | None:
        """The deployed endpoint called `name`, or None."""


class ModelRoute:
    """A model or variant served under its own name: one target, the plain one."""

    def __init__(self, sessions: SessionManager, name: str) -> None:
        self._sessions = sessions
        self._name = name

    def target(self, version: str) -> Target:
        return Target(self._sessions.resolve(self._name, version))

    def infer(
        self,
        executor: Executor,
        version: str,
        route_key: str,
        decode: Decoder,
        deadline: float | None = None,
    ) -> InferResult:
        try:
            target = self.target(version)
        except ParetoError as exc:
            metrics.INFERENCE_REQUESTS.labels(*UNRESOLVED_LABELS, exc.code).inc()
            raise
        return executor.run(target, decode, deadline=deadline)

    def describe(self, version: str) -> tuple[Servable, str]:
        target = self.target(version)
        return target.servable, target.runtime_label()

    def ready_targets(self, version: str) -> list[Target]:
        return [self.target(version)]


class DataPlane:
    def __init__(self, executor: Executor, routes: Routes | None = None) -> None:
        self.executor = executor
        self.sessions = executor.sessions
        self._routes = routes  # deployed endpoints take precedence over model names

    def route(self, name: str) -> Route:
        deployed = self._routes.route(name) if self._routes is not None else None
        return deployed if deployed is not None else ModelRoute(self.sessions, name)

    def infer(
        self,
        name: str,
        version: str,
        decode: Decoder,
        route_key: str = "",
        deadline: float | None = None,
    ) -> InferResult:
        """`route_key` (sticky routing) matters only for deployed endpoints; `deadline`
        (time.monotonic) is when the caller stops waiting."""
        return self.route(name).infer(self.executor, version, route_key, decode, deadline)

    def model(self, name: str, version: str = "") -> Servable:
        """What (name, version) designates (NotFound if nothing); loads nothing."""
        return self.route(name).describe(version)[0]

    def model_runtime(self, name: str, version: str = "") -> str:
        """The runtime that serves (name, version): a deployment's target's, else the model
        format's default; "" when the format has no default runtime."""
        return self.route(name).describe(version)[1]

    def model_ready(self, name: str, version: str = "") -> bool:
        return self.readiness(name, version)[0]

    def readiness(self, name: str, version: str = "") -> tuple[bool, str]:
        """Whether a request for (name, version) would be served now (loading on demand
        counts), and if not, why."""
        for target in self.route(name).ready_targets(version):
            ready, reason = self.sessions.readiness(target)
            if not ready:
                return False, reason
        return True, ""

    def load(self, name: str, version: str = "") -> None:
        for target in self.route(name).ready_targets(version):
            self.sessions.load(target)

    def unload(self, name: str) -> None:
        self.model(name)  # NotFound for unknown names
        self.sessions.unload(name)
