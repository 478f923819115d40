"""The metadata store's interfaces: one per kind of record, and `Repository`, all of them.

Every layer above the store types its repository with these; `SqliteRepository` and
`PostgresRepository` (service/store/open.py picks one) implement them from the same SQL.
Every method is atomic; blobs are written before rows refer to them.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from typing import Any

from service.store.deployment_records import DeploymentRecord
from service.store.records import (
    DatasetRecord,
    JobEvent,
    JobRecord,
    ModelRecord,
    SearchRecord,
    VariantRecord,
)


class ModelRepository(abc.ABC):
    """Model metadata. Every method is atomic; blobs are written before rows refer to them."""

    @abc.abstractmethod
    def add_model(self, record: ModelRecord, new_version: bool) -> ModelRecord:
        """Insert a model. If `record.name` exists: AlreadyExists unless `new_version`,
        then it is stored as the next version. Returns the stored record (version and
        created_at filled in; `record.version` is ignored)."""

    @abc.abstractmethod
    def get_model(self, name: str, version: int = 0) -> ModelRecord:
        """Version 0 means latest. Raises NotFound naming what is missing."""

    @abc.abstractmethod
    def list_models(self, label_selector: dict[str, str] | None = None) -> list[ModelRecord]:
        """All versions, ordered by name then version."""

    @abc.abstractmethod
    def delete_model(
        self, name: str, version: int = 0, check: Callable[[], None] | None = None
    ) -> list[ModelRecord]:
        """Version 0 deletes every version. NotFound; FailedPrecondition while a
        deployment, a variant or a queued or running job refers to it; then `check` (the
        caller's own refusal, run under the same write lock). Returns the deleted records."""

    @abc.abstractmethod
    def name_exists(self, name: str) -> bool: ...

    @abc.abstractmethod
    def referenced_blobs(self) -> set[str]:
        """sha256 of every blob some record refers to (for garbage collection)."""


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
    def requeue_job(self, job_id: str, owner: str, attempt: int) -> JobRecord | None:
        """RUNNING for `owner` in run `attempt` -> QUEUED (a lost run of a job that has
        attempts left); None when the job is no longer in that run."""

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
    def delete_variant(
        self, variant_id: str, check: Callable[[], None] | None = None
    ) -> VariantRecord:
        """NotFound; FailedPrecondition while a deployment targets it; then `check`."""


class DeploymentRepository(abc.ABC):
    @abc.abstractmethod
    def add_deployment(self, record: DeploymentRecord) -> DeploymentRecord:
        """AlreadyExists if the name is taken; NotFound if its model or a target's version
        or variant is gone. Returns it with revision 1 and its times."""

    @abc.abstractmethod
    def get_deployment(self, name: str) -> DeploymentRecord: ...

    @abc.abstractmethod
    def list_deployments(self) -> list[DeploymentRecord]: ...

    @abc.abstractmethod
    def update_deployment(self, record: DeploymentRecord) -> DeploymentRecord:
        """FailedPrecondition unless `record.revision` is the stored one (another change
        came first); returns it with the next revision."""

    @abc.abstractmethod
    def delete_deployment(self, name: str) -> DeploymentRecord: ...


class SearchRepository(abc.ABC):
    @abc.abstractmethod
    def add_search(self, job_id: str, spec: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def remove_search(self, job_id: str) -> None:
        """Undo `add_search` when the job row could not be created."""

    @abc.abstractmethod
    def get_search(self, job_id: str) -> SearchRecord | None: ...

    @abc.abstractmethod
    def latest_search(self, model: str) -> SearchRecord | None:
        """The newest search job of `model` (by the job's creation order)."""

    @abc.abstractmethod
    def put_search_result(self, job_id: str, result: dict[str, Any]) -> None: ...


class ServingConfigRepository(abc.ABC):
    @abc.abstractmethod
    def set_serving_config(self, name: str, config: dict[str, Any]) -> None:
        """Store how model `name` is served (NotFound if no such model)."""

    @abc.abstractmethod
    def get_serving_config(self, name: str) -> dict[str, Any] | None:
        """None when the model has no config of its own (the defaults apply)."""


class Repository(
    ModelRepository,
    DatasetRepository,
    JobRepository,
    VariantRepository,
    DeploymentRepository,
    SearchRepository,
    ServingConfigRepository,
):
    """The whole metadata store of one process."""

    # Whether several replicas share it (PostgreSQL) or one process owns it (SQLite).
    shared: bool
    # Bumped after each committed write through this object: a cache of what it read
    # (service/serving/servables.py) sees that a local write happened since it filled.
    write_generation: int = 0

    @abc.abstractmethod
    def fence(self, job_id: str, attempt: int) -> None:
        """Make every later write through this object conditional on job `job_id` still
        being in run `attempt` (JobFenced otherwise)."""

    @abc.abstractmethod
    def close(self) -> None: ...
