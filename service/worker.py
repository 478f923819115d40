"""A job's worker process: `python -m service.worker --data-dir D --job-id ID`.

Started by the scheduler in its own process group with its memory limit already set
(RLIMIT_AS, applied by the scheduler with prlimit). The worker makes itself die with the
server (PR_SET_PDEATHSIG) before doing anything else, turns SIGTERM into a cancellation
flag that the pipeline checks between steps and techniques check inside long loops, and
runs the job. Anything unexpected becomes FAILED with the exception as the reason; a crash
that kills the process is turned into FAILED by the scheduler from the exit status.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from service.jobs.process_life import cancellation_flag, die_with_parent

if TYPE_CHECKING:
    from collections.abc import Callable

    from service.settings import Settings

log = logging.getLogger("service.worker")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m service.worker")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--job-id", required=True)
    parser.add_argument("--parent-pid", type=int, default=0, help="exit if it is gone")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    die_with_parent(args.parent_pid)
    cancelled = cancellation_flag()
    from service.settings import load_settings

    settings = load_settings(data_dir=args.data_dir)
    logging.basicConfig(level=settings.log_level, format=log_format(args.job_id))
    return run_reported(args.data_dir, args.job_id, settings, cancelled.is_set)


def log_format(job_id: str) -> str:
    return f"%(asctime)s {job_id} %(levelname)s %(message)s"


def run_reported(
    data_dir: Path, job_id: str, settings: Settings, is_cancelled: Callable[[], bool]
) -> int:
    """Load the plug-ins, run the job; any unexpected error FAILS it. The exit code: 0, or
    1 after an internal error. A Ray actor runs jobs through here too."""
    from compressors import registry
    from pareto_core.errors import JobFenced
    from runtimes import helper_process

    registry.add_modules(settings.technique_modules())
    helper_process.configure(settings.helper_memory_bytes, settings.max_helper_processes)
    try:
        run_job(data_dir, job_id, settings, is_cancelled)
    except JobFenced as exc:  # another replica runs the job now: leave it alone
        log.warning("job %s: %s; stopping", job_id, exc)
        return 0
    except Exception as exc:
        log.exception("job %s: unexpected error", job_id)
        _fail(settings, data_dir, job_id, f"internal error in the worker: {exc!r}")
        return 1
    return 0


def run_job(
    data_dir: Path, job_id: str, settings: Settings, is_cancelled: Callable[[], bool]
) -> None:
    """Run job `job_id` to a final state (unless cancelled or stopped meanwhile)."""
    from service.store.blobs import BlobStore
    from service.store.open import open_repository
    from service.store.records import JOB_RUNNING

    blobs = BlobStore(data_dir)
    repo = open_repository(settings, data_dir)
    try:
        job = repo.get_job(job_id)
        if job.state != JOB_RUNNING:
            log.info("job %s is %s, not RUNNING: nothing to do", job_id, job.state)
            return
        repo.fence(job.id, job.attempts)  # writes stop if another replica takes the job
        search = repo.get_search(job_id)
        if search is not None:  # a search explores recipes itself (service/search/)
            from service.search.run import SearchRun

            SearchRun(repo, blobs, job, search.spec, settings, is_cancelled).run()
            return
        from service.jobs.runner import JobRun

        JobRun(repo, blobs, job, settings, is_cancelled).run()
    finally:
        repo.close()


def _fail(settings: Settings, data_dir: Path, job_id: str, reason: str) -> None:
    from service.jobs.events import finish_job
    from service.store.open import open_repository
    from service.store.records import JOB_FAILED

    repo = open_repository(settings, data_dir)
    try:
        finish_job(repo, job_id, JOB_FAILED, reason)
    finally:
        repo.close()


if __name__ == "__main__":
    sys.exit(main())
