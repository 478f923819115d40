"""Records of the compression engine: datasets, jobs, job events and variants.

Recipes, budgets, evaluation settings and measurements are kept as plain JSON-able dicts
here; their schemas are the pareto.v1 messages of the same names (jobs.proto,
variants.proto), converted with google.protobuf.json_format by the servicers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pareto_core.tensors import Signature, TensorSpec

JOB_QUEUED = "QUEUED"
JOB_RUNNING = "RUNNING"
JOB_SUCCEEDED = "SUCCEEDED"
JOB_FAILED = "FAILED"
JOB_CANCELLED = "CANCELLED"
JOB_STATES = (JOB_QUEUED, JOB_RUNNING, JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED)
JOB_FINAL_STATES = (JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED)


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


@dataclass(frozen=True)
class DatasetRecord:
    name: str
    sha256: str
    size_bytes: int
    arrays: tuple[TensorSpec, ...]  # shape[0] = num_samples; "labels" included when present
    num_samples: int
    has_labels: bool
    description: str = ""
    created_at: datetime | None = None


@dataclass(frozen=True)
class RecipeSpec:
    """One alternative: ordered steps of {"technique": name, "config": {...}} (validated)."""

    name: str
    steps: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class JobRecord:
    id: str
    model: str
    model_version: int  # resolved at CreateJob: never 0
    recipes: tuple[RecipeSpec, ...]
    datasets: dict[str, str]  # role -> dataset name
    quality_budget: dict[str, Any]  # QualityBudget fields
    evaluation: dict[str, Any]  # EvaluationSettings fields (defaults filled in)
    state: str = JOB_QUEUED
    reason: str = ""
    percent: float = 0.0
    variant_ids: tuple[str, ...] = ()
    attempts: int = 0
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    owner: str = ""  # replica (PARETO_REPLICA_ID) that claimed it last
    heartbeat_at: datetime | None = None  # its last lease renewal while RUNNING


@dataclass(frozen=True)
class JobEvent:
    job_id: str
    sequence: int
    state: str
    step: str = ""
    percent: float = 0.0
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    time: datetime | None = None


@dataclass(frozen=True)
class VariantRecord:
    id: str
    parent_model: str
    parent_version: int
    job_id: str
    recipe: RecipeSpec
    format: str  # "onnx" today; same vocabulary as ModelRecord.format
    sha256: str
    size_bytes: int
    signature: Signature
    metrics: dict[str, Any]  # Measurement fields
    parent_metrics: dict[str, Any]  # Measurement of the parent in the same run
    budget_ok: bool
    budget_reason: str = ""
    report: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None

    @property
    def serving_name(self) -> str:
        return f"{self.parent_model}.{self.id}"


@dataclass(frozen=True)
class SearchRecord:
    """A search job's spec (pareto.v1.SearchSpec, normalized) and its latest result
    (pareto.v1.SearchResult fields: trials, frontier, recommendation), both JSON-able."""

    job_id: str
    spec: dict[str, Any]
    result: dict[str, Any] = field(default_factory=dict)
    updated_at: datetime | None = None
