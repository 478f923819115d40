"""Metadata records and the repository interface.

The interface is small on purpose: `SqliteRepository` and `PostgresRepository` implement
it from the same SQL, and callers get either from `service/store/open.py`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime

from pareto_core.tensors import Signature


@dataclass(frozen=True)
class ModelRecord:
    name: str
    version: int
    format: str
    sha256: str
    size_bytes: int
    signature: Signature
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None


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
    def delete_model(self, name: str, version: int = 0) -> list[ModelRecord]:
        """Version 0 deletes every version. Raises NotFound. Returns the deleted records."""

    @abc.abstractmethod
    def name_exists(self, name: str) -> bool: ...

    @abc.abstractmethod
    def referenced_blobs(self) -> set[str]:
        """sha256 of every blob some record refers to (for garbage collection)."""

    @abc.abstractmethod
    def close(self) -> None: ...
