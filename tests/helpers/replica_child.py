"""A stand-in replica in a process of its own, for tests/integration/test_postgres_replicas.py.

python -m tests.helpers.replica_child claim URL REPLICA THREADS
    prints "ready", waits for a line on stdin, then claims jobs with THREADS
    repositories (one per thread) until none is left; prints the ids as JSON.
python -m tests.helpers.replica_child hold URL REPLICA LEASE_S
    claims one job, prints its id, then renews its lease every LEASE_S / 4 until
    killed (the test kills it with SIGKILL, as a node failure would).
"""

from __future__ import annotations

import json
import sys
import threading
import time

from service.store.postgres_repository import PostgresRepository


def claim(url: str, replica: str, threads: int) -> None:
    repos = [PostgresRepository(url, pool_size=1) for _ in range(threads)]
    claimed: list[str] = []
    print("ready", flush=True)
    sys.stdin.readline()

    def run(repo: PostgresRepository) -> None:
        while (job := repo.claim_next_job(replica)) is not None:
            claimed.append(job.id)  # list.append is atomic

    workers = [threading.Thread(target=run, args=(r,)) for r in repos]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(json.dumps(claimed), flush=True)


def hold(url: str, replica: str, lease_s: float) -> None:
    repo = PostgresRepository(url, pool_size=1)
    job = repo.claim_next_job(replica)
    assert job is not None, "no job to claim"
    print(job.id, flush=True)
    while True:
        time.sleep(lease_s / 4)
        repo.heartbeat_jobs(replica, [job.id])


if __name__ == "__main__":
    mode, url, replica, arg = sys.argv[1:5]
    if mode == "claim":
        claim(url, replica, int(arg))
    else:
        hold(url, replica, float(arg))
