"""`pareto.v1.JobService` (being written: UNIMPLEMENTED until then)."""

from __future__ import annotations

from pareto.v1 import jobs_pb2_grpc
from service.jobs.scheduler import JobScheduler
from service.store.sqlite_repository import SqliteRepository


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, repo: SqliteRepository, scheduler: JobScheduler) -> None:
        self._repo = repo
        self._scheduler = scheduler
