"""Repository interfaces of the compression engine (datasets, jobs, events, variants).

Implemented by `SqliteRepository` and `PostgresRepository` (the same database as the
models, so the job worker processes, the server and its replicas share one source of
truth). Every method is atomic.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from typing import Any

from service.store.records import DatasetRecord, JobEvent, JobRecord, VariantRecord


class DatasetRepository(abc.ABC):
    @abc.abstractmethod
    def add_dataset(self, record: DatasetRecord) -> DatasetRecord:
        """AlreadyExists if the name is taken. Returns the record with created_at."""

    @abc.abstractmethod
    def get_dataset(self, name: str) -> DatasetRecord:
        """NotFound naming the dataset."""

    @abc.abstractmethod
    def list_datasets(self) -> list[DatasetRecord]: ...

    @abc.abstractmethod
    def delete_dataset(self, name: str) -> DatasetRecord:
        """NotFound; FailedPrecondition while a QUEUED/RUNNING job uses it."""


class JobRepository(abc.ABC):
    @abc.abstractmethod
    def create_job(self, record: JobRecord, max_queued: int = 0) -> JobRecord:
        """Insert a QUEUED job (record.id chosen by the caller) and its first event.
        ResourceExhausted, naming the limit, when `max_queued` (> 0) are QUEUED already."""

    @abc.abstractmethod
    def get_job(self, job_id: str) -> JobRecord: ...

    @abc.abstractmethod
    def list_jobs(self, model: str = "") -> list[JobRecord]:
        """Newest first; only jobs of `model` when given."""

    @abc.abstractmethod
    def count_jobs_by_state(self) -> dict[str, int]:
        """state -> number of jobs in it (states without jobs are absent)."""

    @abc.abstractmethod
    def claim_next_job(self, owner: str = "") -> JobRecord | None:
        """Atomically move the oldest QUEUED job to RUNNING for replica `owner` (attempts
        + 1, started_at and the lease's heartbeat_at now)."""

    @abc.abstractmethod
    def heartbeat_jobs(self, owner: str, job_ids: Iterable[str]) -> set[str]:
        """Renew the leases of those `job_ids` still RUNNING for `owner`; returns them."""

    @abc.abstractmethod
    def requeue_expired_jobs(self, max_attempts: int, lease_s: float) -> list[JobRecord]:
        """RUNNING jobs whose lease is older than `lease_s` go back to QUEUED, or FAILED
        once they used max_attempts. Returns the jobs it changed."""

    @abc.abstractmethod
    def update_job(self, job_id: str, **fields: Any) -> JobRecord:
        """Set any of: state, reason, percent, variant_ids, finished_at. Moving to a final
        state sets finished_at. A job already in a final state is not changed again
        (returns it unchanged), so a late event cannot resurrect a cancelled job."""

    @abc.abstractmethod
    def recover_interrupted_jobs(
        self, max_attempts: int, owner: str = "", lease_s: float | None = None
    ) -> list[JobRecord]:
        """At start-up: RUNNING jobs of replica `owner`, and those whose lease expired
        (with `lease_s`), go back to QUEUED, or FAILED ("interrupted ...") once they used
        max_attempts. Returns the jobs it changed."""

    @abc.abstractmethod
    def add_event(self, event: JobEvent) -> JobEvent:
        """Append an event; `sequence` is assigned (1, 2, ... per job), time set."""

    @abc.abstractmethod
    def list_events(self, job_id: str, from_sequence: int = 0) -> list[JobEvent]: ...


class VariantRepository(abc.ABC):
    @abc.abstractmethod
    def add_variant(self, record: VariantRecord) -> VariantRecord:
        """Insert (blob already committed). Returns it with created_at."""

    @abc.abstractmethod
    def get_variant(self, variant_id: str) -> VariantRecord: ...

    @abc.abstractmethod
    def list_variants(self, model: str = "") -> list[VariantRecord]:
        """Oldest first; only variants whose parent_model is `model` when given."""

    @abc.abstractmethod
    def delete_variant(self, variant_id: str) -> VariantRecord: ...
