"""One run of a job on Ray: `python -m service.ray_driver --data-dir D --job-id ID`.

Started by the scheduler through `RayLauncher` exactly like a local worker (own process
group, dies with the server, SIGTERM = cancel, output to the job's log). It connects to
PARETO_RAY_ADDRESS as a Ray driver, starts the job's actor (service/ray_actor.py)
with the job's resources (service/jobs/resources.py), hands it the shared settings
(the database URL travels as an argument, never in a runtime_env, which Ray's dashboard
shows), and waits:

* the actor returns the worker's exit code (the job wrote its own final state): exit it;
* SIGTERM: ask the actor to cancel (the job stops between steps), keep waiting;
* Ray loses the actor (its worker process or node died): say why on one `ray: ` line and
  exit EXIT_LOST; the cluster cannot be reached: EXIT_UNREACHABLE. The scheduler re-queues
  the job (within PARETO_JOB_MAX_ATTEMPTS).

The driver owns the actor: when the driver dies (SIGKILL after a cancel's grace, the
server dying), Ray kills the actor and every task it started.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.jobs.process_life import cancellation_flag, die_with_parent
from service.jobs.ray_launcher import (
    EXIT_LOST,
    EXIT_UNREACHABLE,
    REASON_PREFIX,
    describe_error,
    probe,
)
from service.worker import log_format, parse_args

NAMESPACE = "pareto"
CONNECT_TIMEOUT_S = 60.0  # one ray.init: it retries for ever when the head does not answer
CONNECT_ATTEMPTS = 3  # a connection that fails (ConnectionError) is tried this often in all
WAIT_S = 0.5

log = logging.getLogger("service.ray_driver")


def say(message: str) -> None:
    """The reason the scheduler reads back from the job's log (RayLauncher.ended)."""
    log.error("%s%s", REASON_PREFIX, " ".join(message.split()))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    die_with_parent(args.parent_pid)
    cancelled = cancellation_flag()
    from service.settings import load_settings

    settings = load_settings(data_dir=args.data_dir)
    logging.basicConfig(level=settings.log_level, format=log_format(args.job_id))
    try:
        probe(settings.ray_address)
        _connect(settings.ray_address)
    except Exception as exc:
        say(f"cannot reach the Ray cluster at {settings.ray_address}: {exc}")
        return EXIT_UNREACHABLE
    return _run(args.data_dir, args.job_id, settings, cancelled)


def _connect(address: str) -> None:
    import ray

    def init() -> None:
        watchdog = threading.Timer(CONNECT_TIMEOUT_S, _give_up, (address,))
        watchdog.daemon = True
        watchdog.start()
        try:
            ray.init(
                address=address,
                namespace=NAMESPACE,
                log_to_driver=False,
                logging_level=logging.WARNING,
                configure_logging=False,
            )
        finally:
            watchdog.cancel()

    connect_with_retries(init, ray.shutdown, CONNECT_ATTEMPTS)


def connect_with_retries(
    init: Callable[[], object],
    reset: Callable[[], object],
    attempts: int,
    pause_s: float = 1.0,
) -> None:
    """`init()`, tried again after a ConnectionError, `attempts` times in all.

    Through Ray Client (ray://) the head's proxy starts a server process for each driver;
    on a loaded head that process sometimes dies at start, and the driver learns it only
    after about 30-40 s ("Initialization failure from server: ... Starting Ray client
    server failed"). The next try usually succeeds (measured: 5 of 54 connections failed,
    never two in a row, under a saturated CPU). Without retrying, such a blip
    would cost the job one of its PARETO_JOB_MAX_ATTEMPTS. Other errors and the last
    ConnectionError propagate.
    """
    for attempt in range(1, attempts + 1):
        try:
            init()
            return
        except ConnectionError as exc:
            if attempt == attempts:
                raise
            reason = " ".join(str(exc).split())
            log.warning("connecting to Ray failed (try %d of %d): %s", attempt, attempts, reason)
            reset()
            time.sleep(pause_s)


def _give_up(address: str) -> None:
    say(f"cannot reach the Ray cluster at {address}: no answer in {CONNECT_TIMEOUT_S:g} s")
    logging.shutdown()
    os._exit(EXIT_UNREACHABLE)


def _run(data_dir: Path, job_id: str, settings: Any, cancelled: threading.Event) -> int:
    import ray
    from ray.exceptions import RayActorError, RayError

    from service.jobs.spawn import shared_settings
    from service.ray_actor import start_actor

    actor, where = start_actor(data_dir, job_id, settings)
    log.info("job %s: running in Ray actor %s", job_id, where)
    ref = actor.run.remote(str(data_dir), job_id, shared_settings(settings))
    asked_to_cancel = False
    while not ray.wait([ref], timeout=WAIT_S)[0]:
        if cancelled.is_set() and not asked_to_cancel:
            actor.cancel.remote()
            asked_to_cancel = True
    try:
        return int(ray.get(ref))
    except RayActorError as exc:
        say(f"the Ray worker running the job died: {describe_error(exc)}")
    except RayError as exc:
        say(f"Ray lost the job's run: {describe_error(exc)}")
    return EXIT_LOST


if __name__ == "__main__":
    sys.exit(main())
