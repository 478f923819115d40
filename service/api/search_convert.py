"""pareto.v1 SearchSpec / SearchResult <-> the plain dicts stored beside a search job.

Server side (no Optuna). Stored results may hold NaN (a quality that could not be
computed); protobuf's JSON parser refuses it, so non-finite numbers are left unset.
"""

from __future__ import annotations

import math
from typing import Any

from google.protobuf.json_format import ParseDict

from pareto.v1 import jobs_pb2
from service.api.convert import state_to_proto
from service.search.spec import CONSTRAINT_FIELDS
from service.store.records import JobRecord, SearchRecord

_TRIAL_STATE_PREFIX = "TRIAL_STATE_"


def search_from_proto(spec: jobs_pb2.SearchSpec) -> dict[str, Any]:
    """The request's spec as a dict (unset numbers are 0, validated later)."""
    c = spec.constraints
    return {
        "objectives": list(spec.objectives),
        "batch_size": int(spec.batch_size),
        "constraints": {f: getattr(c, f) for f in CONSTRAINT_FIELDS if c.HasField(f)},
        "n_trials": int(spec.n_trials),
        "timeout_s": float(spec.timeout_s),
        "techniques": list(spec.techniques),
        "sampler": spec.sampler,
        "seed": int(spec.seed),
        "max_steps": int(spec.max_steps),
        "resume_from": spec.resume_from,
        "parallelism": int(spec.parallelism),
    }


def _finite(value: Any) -> Any:
    """`value` with non-finite floats (and the keys holding them) removed."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        cleaned = {k: _finite(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v is not None}
    if isinstance(value, list):
        return [v for v in (_finite(v) for v in value) if v is not None]
    return value


def spec_to_proto(spec: dict[str, Any]) -> jobs_pb2.SearchSpec:
    return ParseDict(_finite(dict(spec)), jobs_pb2.SearchSpec(), ignore_unknown_fields=True)


def _trial(trial: dict[str, Any]) -> dict[str, Any]:
    return {**trial, "state": _TRIAL_STATE_PREFIX + str(trial.get("state", "UNSPECIFIED"))}


def result_to_proto(job: JobRecord, record: SearchRecord) -> jobs_pb2.SearchResult:
    data = dict(record.result)
    data["trials"] = [_trial(t) for t in data.get("trials", [])]
    message = ParseDict(_finite(data), jobs_pb2.SearchResult(), ignore_unknown_fields=True)
    message.job_id = job.id
    message.model = job.model
    message.model_version = job.model_version
    message.state = state_to_proto(job.state)
    message.reason = job.reason
    message.spec.CopyFrom(spec_to_proto(record.spec))
    message.study_name = str(record.spec.get("study", ""))
    if not message.quality_budget.ListFields():
        message.quality_budget.CopyFrom(
            ParseDict(job.quality_budget, jobs_pb2.QualityBudget(), ignore_unknown_fields=True)
        )
    return message
