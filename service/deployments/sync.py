"""Keeps this replica's routing tables in step with a shared metadata database.

With PostgreSQL several gateways serve the same deployments. A change made through one
(CreateDeployment, UpdateTraffic, DeleteDeployment, a canary step or rollback) is stored
with a new revision; every other replica polls the revisions every
PARETO_DEPLOYMENT_SYNC_S and adopts what changed (`DeploymentManager.sync`). Canary plans
are judged by every replica on its own share of the traffic; their writes are checked
against the revision, so each step is taken once and the others adopt it here.
"""

from __future__ import annotations

import logging
import threading

from service.deployments.manager import DeploymentManager

log = logging.getLogger(__name__)


class DeploymentSync:
    def __init__(self, manager: DeploymentManager, interval_s: float) -> None:
        self._manager = manager
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="deployment-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                changed = self._manager.sync()
            except Exception:  # the database may be briefly unreachable: try again later
                log.exception("deployment sync failed")
                continue
            if changed:
                log.info("deployments changed by another replica: %s", ", ".join(changed))
