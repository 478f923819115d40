"""Deployment lifecycle: validate, load, persist, then swap the routing table in.

Changes are serialised by one lock; each one is checked completely (and the sessions it
needs are loaded) before the row is written, and the new `Endpoint` is installed by one
dict assignment after the write, so a request sees the old split or the new one, and a
refused change leaves everything as it was.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

from pareto_core.errors import AlreadyExists, DeadlineExceeded, InvalidArgument, ParetoError
from service import metrics
from service.deployments import endpoint as ep
from service.deployments import validate
from service.deployments.shadow import ShadowQueue
from service.deployments.stats import TargetStats
from service.deployments.targets import ServingTarget, build_target, forget_metrics, publish_weight
from service.serving.servables import Servable
from service.serving.sessions import SessionManager
from service.store.deployment_records import (
    CANARY_CANCELLED,
    CANARY_RUNNING,
    CanaryPlan,
    CanaryStatus,
    DeploymentRecord,
    TargetSpec,
)
from service.store.interfaces import Repository
from service.store.sql_codec import now

log = logging.getLogger(__name__)


class DeploymentManager:
    def __init__(
        self,
        repo: Repository,
        sessions: SessionManager,
        shadows: ShadowQueue,
        stats_window: int = 4096,
    ) -> None:
        self._repo = repo
        self._sessions = sessions
        self.shadows = shadows
        self._stats_window = stats_window
        self._stats: dict[tuple[str, str], TargetStats] = {}
        self._endpoints: dict[str, ep.Endpoint] = {}
        self._write = threading.Lock()
        shadows.is_live = self._is_live

    def _is_live(self, target: ServingTarget) -> bool:
        endpoint = self._endpoints.get(target.endpoint)
        return endpoint is not None and any(t.name == target.name for t in endpoint.targets)

    def restore(self) -> threading.Thread:
        """Serve every stored deployment; their sessions load in the background (or on
        first use, whichever comes first)."""
        for record in self._repo.list_deployments():
            try:
                self._install(self._build(record))
            except ParetoError as exc:
                log.error("deployment %r is not served: %s", record.name, exc)
        loader = threading.Thread(target=self._load_all, name="deployments-load", daemon=True)
        loader.start()
        return loader

    def _load_all(self) -> None:
        for endpoint in self.endpoints():
            for target in endpoint.targets:
                try:
                    self._sessions.load(target.target)
                except Exception as exc:  # logged; requests will report it too
                    log.error("deployment %r target %r: %s", target.endpoint, target.name, exc)

    # -- data plane ---------------------------------------------------------------------

    def serves(self, name: str) -> bool:
        return name in self._endpoints

    def route(self, name: str) -> ep.DeployedRoute | None:
        """The data plane's route for endpoint `name` (None: no such deployment)."""
        endpoint = self._endpoints.get(name)
        return None if endpoint is None else ep.DeployedRoute(endpoint, self.shadows)

    def endpoints(self) -> list[ep.Endpoint]:
        return list(self._endpoints.values())

    # -- management ---------------------------------------------------------------------

    def create(
        self,
        name: str,
        model: str,
        targets: list[TargetSpec],
        canary: CanaryPlan | None,
        still_wanted: Callable[[], bool] = lambda: True,
    ) -> DeploymentRecord:
        """Check, load, store, serve. `still_wanted` is asked once the sessions are loaded:
        a caller that gave up meanwhile (deadline, cancel) gets nothing created."""
        with self._write:
            validate.check_endpoint(self._repo, name, model)
            if name in self._endpoints or any(d.name == name for d in self.list()):
                raise AlreadyExists(
                    f"deployment {name!r} already exists; change its traffic with "
                    "UpdateTraffic or delete it first"
                )
            specs, servables = validate.check_targets(
                self._repo, model, targets, canary is not None
            )
            status = CanaryStatus(CANARY_RUNNING, 1, "", now()) if canary else None
            record = DeploymentRecord(name, model, specs, canary, status)
            record = validate.check_canary(record)
            endpoint = self._build(record, servables)
            loaded = self._load(endpoint)
            try:
                if not still_wanted():
                    raise DeadlineExceeded(
                        f"the call ended before deployment {name!r} was stored; nothing was "
                        "created (loading its targets took longer than the call's deadline?)"
                    )
                stored = self._repo.add_deployment(record)
            except ParetoError:
                self._unload(endpoint, loaded)
                raise
            self._install(replace_record(endpoint, stored))
            return stored

    def update_traffic(
        self, name: str, weights: dict[str, float], canary: CanaryPlan | None
    ) -> DeploymentRecord:
        with self._write:
            record = self._repo.get_deployment(name)
            if canary is not None:
                if weights:
                    raise InvalidArgument("give weights or a canary plan, not both")
                zero = {t.name: 0.0 for t in record.primaries}
                status = CanaryStatus(CANARY_RUNNING, 1, "", now())
                changed = replace(record.with_weights(zero), canary=canary, canary_status=status)
                changed = validate.check_canary(changed)
            else:
                changed = record.with_weights(validate.check_weights(record, weights))
                if record.canary_running:
                    reason = "traffic set by UpdateTraffic"
                    status = CanaryStatus(CANARY_CANCELLED, 0, reason, now())
                    changed = replace(changed, canary_status=status)
            return self.apply(changed, locked=True)

    def apply(self, record: DeploymentRecord, locked: bool = False) -> DeploymentRecord:
        """Persist a change of `record` (revision-checked) and serve it."""
        if not locked:
            with self._write:
                return self.apply(record, locked=True)
        endpoint = self._build(record)
        stored = self._repo.update_deployment(record)
        self._install(replace_record(endpoint, stored))
        return stored

    def get(self, name: str) -> DeploymentRecord:
        return self._repo.get_deployment(name)

    def list(self) -> list[DeploymentRecord]:
        return self._repo.list_deployments()

    def delete(self, name: str) -> DeploymentRecord:
        with self._write:
            record = self._repo.delete_deployment(name)
            self._drop(name)
            return record

    def sync(self) -> list[str]:
        """Adopt what other replicas stored in a shared database: new deployments, changed
        ones (another revision: traffic updates, canary steps) and deleted ones. Returns
        the names that changed here. A deployment that cannot be served here is logged and
        tried again at the next call."""
        with self._write:
            stored = {r.name: r for r in self._repo.list_deployments()}
            changed = [name for name in list(self._endpoints) if name not in stored]
            for name in changed:
                self._drop(name)
            for name, record in stored.items():
                current = self._endpoints.get(name)
                if current is not None and _same_revision(current.record, record):
                    continue
                try:
                    endpoint = self._build(record)
                    self._load(endpoint)
                except ParetoError as exc:
                    log.error("deployment %r changed elsewhere, not served here: %s", name, exc)
                    continue
                self._install(endpoint)
                if current is not None:
                    kept = {t.name for t in endpoint.targets}
                    self._retire(tuple(t for t in current.targets if t.name not in kept))
                changed.append(name)
            return changed

    def close(self) -> None:
        self.shadows.close()

    # -- internals ----------------------------------------------------------------------

    def _build(
        self, record: DeploymentRecord, servables: list[Servable] | None = None
    ) -> ep.Endpoint:
        if servables is None:
            servables = [
                validate.resolve_target(self._repo, record.model, t.model_version, t.name)
                for t in record.targets
            ]
        targets = [
            build_target(record.name, spec, servable, self._stats_of(record, spec))
            for spec, servable in zip(record.targets, servables, strict=True)
        ]
        return ep.build_endpoint(record, targets)

    def _stats_of(self, record: DeploymentRecord, spec: TargetSpec) -> TargetStats:
        key = (record.name, spec.name)
        if key not in self._stats:
            self._stats[key] = TargetStats(self._stats_window)
        return self._stats[key]

    def _load(self, endpoint: ep.Endpoint) -> list[ServingTarget]:
        """Load every target's session; on a failure, unload those this call loaded.
        Returns the targets it loaded."""
        loaded: list[ServingTarget] = []
        try:
            for target in endpoint.targets:
                if not self._sessions.is_ready(target.target):
                    self._sessions.load(target.target)
                    loaded.append(target)
        except ParetoError as exc:
            self._unload(endpoint, loaded)
            raise type(exc)(f"target {target.name!r}: {exc}") from None
        return loaded

    def _unload(self, endpoint: ep.Endpoint, loaded: list[ServingTarget]) -> None:
        """Undo `_load` of an endpoint that is not installed."""
        for target in loaded:
            self._sessions.unload_target(target.target)
        for target in endpoint.targets:
            self._stats.pop((endpoint.record.name, target.name), None)

    def _install(self, endpoint: ep.Endpoint) -> None:
        self._endpoints = {**self._endpoints, endpoint.record.name: endpoint}
        for target in endpoint.targets:
            publish_weight(target)
        record = endpoint.record
        if record.canary is not None and record.canary_status is not None:
            canary = endpoint.target(record.canary.canary)
            metrics.CANARY_STEP.labels(*canary.labels).set(record.canary_status.step)

    def _drop(self, name: str) -> None:
        """Stop serving endpoint `name` (deleted here or by another replica)."""
        endpoint = self._endpoints.get(name)
        self._endpoints = {k: v for k, v in self._endpoints.items() if k != name}
        if endpoint is not None:
            self._retire(endpoint.targets)

    def _retire(self, targets: tuple[ServingTarget, ...]) -> None:
        """Forget removed targets; close their own sessions unless another endpoint uses
        them (draining in-flight requests first)."""
        in_use = {t.target.key for e in self._endpoints.values() for t in e.targets}
        for target in targets:
            forget_metrics(target)
            self._stats.pop((target.endpoint, target.name), None)
            if target.has_own_session and target.target.key not in in_use:
                self._sessions.unload_target(target.target)


def replace_record(endpoint: ep.Endpoint, record: DeploymentRecord) -> ep.Endpoint:
    return replace(endpoint, record=record)


def _same_revision(a: DeploymentRecord, b: DeploymentRecord) -> bool:
    """Revisions restart at 1 when a name is deleted and created again: compare times too."""
    return (a.revision, a.created_at, a.updated_at) == (b.revision, b.created_at, b.updated_at)
