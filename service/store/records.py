"""Records of the compression engine: datasets, jobs, job events and variants.

Recipes, budgets, evaluation settings and measurements are kept as plain JSON-able dicts
here; their schemas are the pareto.v1 messages of the same names (jobs.proto,
variants.proto), converted with google.protobuf.json_format by the servicers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pareto_core.tensors import Signature, TensorSpec, text_input
from runtimes.hf.text import TEXT_INPUT, TOKEN_INPUTS

JOB_QUEUED = "QUEUED"
JOB_RUNNING = "RUNNING"
JOB_SUCCEEDED = "SUCCEEDED"
JOB_FAILED = "FAILED"
JOB_CANCELLED = "CANCELLED"
JOB_STATES = (JOB_QUEUED, JOB_RUNNING, JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED)
JOB_FINAL_STATES = (JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED)


@dataclass(frozen=True)
class ModelSource:
    """What a model was exported from at upload (a Hugging Face folder, stored as its own
    blob: a tar of the files Pareto reads), kept for the techniques that train."""

    format: str  # pareto_core.formats.SOURCE_FORMATS
    sha256: str
    size_bytes: int
    task: str
    architecture: str
    export: dict[str, Any]  # exporter, max_abs_diff, sample_rows, seconds, peak_rss_bytes
    text: dict[str, Any]  # runtimes.hf.text.TextSettings as JSON; {} without a tokenizer

    def text_input(self) -> TensorSpec | None:
        """The text input the gateway serves for a model of this source, if any."""
        return text_input(TEXT_INPUT) if self.text else None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "task": self.task,
            "architecture": self.architecture,
            "export": self.export,
            "text": self.text,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelSource:
        return cls(**data)


@dataclass(frozen=True)
class ModelRecord:
    name: str
    version: int
    format: str
    sha256: str
    size_bytes: int
    signature: Signature  # the served file's own inputs and outputs
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    source: ModelSource | None = None

    @property
    def served_signature(self) -> Signature:
        """The signature with the text input the gateway adds when it has the tokenizer."""
        text = self.source.text_input() if self.source is not None else None
        return with_text(self.signature, text)

    @property
    def blobs(self) -> tuple[str, ...]:
        """Every blob the record refers to: its file, and its source's."""
        return (self.sha256,) if self.source is None else (self.sha256, self.source.sha256)


def with_text(signature: Signature, text: TensorSpec | None) -> Signature:
    """`signature` taking `text` too, when its inputs are the ones a tokenizer fills."""
    if text is None or tuple(t.name for t in signature.inputs) != TOKEN_INPUTS:
        return signature
    return Signature(signature.inputs, signature.outputs, text)


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
