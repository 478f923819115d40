"""Record <-> proto conversion for the compression engine's messages (pareto.v1 Recipe,
Job, JobEvent, Dataset, Variant, Measurement). Servicers stay thin by calling these.

Measurements come from the job worker as plain dicts; they are converted field by field
(known fields only, numbers coerced to the field's type, NaN kept) rather than with
`json_format.ParseDict`, which refuses NaN and fails on any key it does not know.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from google.protobuf import struct_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from pareto.v1 import common_pb2, datasets_pb2, jobs_pb2, models_pb2, variants_pb2
from pareto_core import formats
from pareto_core.errors import InvalidArgument
from pareto_core.tensors import TensorSpec
from service.catalog.uploads import UploadRequest
from service.serving.config import ServingConfig
from service.store.records import (
    DatasetRecord,
    JobEvent,
    JobRecord,
    ModelRecord,
    ModelSource,
    RecipeSpec,
    VariantRecord,
)

_STATE_PREFIX = "JOB_STATE_"
_INT_TYPES = (
    FieldDescriptor.CPPTYPE_INT32,
    FieldDescriptor.CPPTYPE_INT64,
    FieldDescriptor.CPPTYPE_UINT32,
    FieldDescriptor.CPPTYPE_UINT64,
)


def timestamp(value: datetime | None) -> Timestamp | None:
    """A Timestamp, or None (the field stays unset) when there is no time."""
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def state_to_proto(state: str) -> int:
    return jobs_pb2.JobState.Value(_STATE_PREFIX + state)


def state_from_proto(value: int) -> str:
    return jobs_pb2.JobState.Name(value).removeprefix(_STATE_PREFIX)


# -- recipes ---------------------------------------------------------------------------


def _integral_floats_to_int(value: Any) -> Any:
    """google.protobuf.Struct keeps every number as a double: 3.0 -> 3 so int fields of
    technique configs validate (float fields accept ints)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral_floats_to_int(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral_floats_to_int(v) for v in value]
    return value


def recipe_from_proto(recipe: jobs_pb2.Recipe, where: str = "recipe") -> RecipeSpec:
    """Unvalidated: `service.jobs.create` checks techniques and configs. `where` names
    the recipe in errors (e.g. "recipes[0]")."""
    steps = tuple(
        {"technique": s.technique, "config": _config(s.config, f"{where}.steps[{j}].config")}
        for j, s in enumerate(recipe.steps)
    )
    return RecipeSpec(name=recipe.name, steps=steps)


def _config(config: struct_pb2.Struct, where: str) -> dict[str, Any]:
    try:
        return _integral_floats_to_int(MessageToDict(config))
    except ValueError:  # found by tests/fuzz: JSON has no NaN or infinity
        raise InvalidArgument(f"{where}: numbers must be finite (got NaN or infinity)") from None


def recipe_to_proto(recipe: RecipeSpec) -> jobs_pb2.Recipe:
    message = jobs_pb2.Recipe(name=recipe.name)
    for step in recipe.steps:
        config = struct_pb2.Struct()
        config.update(dict(step.get("config") or {}))
        message.steps.add(technique=str(step["technique"]), config=config)
    return message


# -- jobs ------------------------------------------------------------------------------


def _parse(data: Mapping[str, Any], message: Message) -> Any:
    """Stored settings back into their message; a key this version does not know (written
    by a newer one) is skipped rather than making the job unreadable."""
    return ParseDict(dict(data), message, ignore_unknown_fields=True)


def job_to_proto(job: JobRecord) -> jobs_pb2.Job:
    return jobs_pb2.Job(
        id=job.id,
        model=job.model,
        model_version=job.model_version,
        recipes=[recipe_to_proto(r) for r in job.recipes],
        datasets=dict(job.datasets),
        quality_budget=_parse(job.quality_budget, jobs_pb2.QualityBudget()),
        evaluation=_parse(job.evaluation, jobs_pb2.EvaluationSettings()),
        state=state_to_proto(job.state),
        reason=job.reason,
        percent=job.percent,
        variant_ids=list(job.variant_ids),
        attempts=job.attempts,
        created_at=timestamp(job.created_at),
        started_at=timestamp(job.started_at),
        finished_at=timestamp(job.finished_at),
    )


def event_to_proto(event: JobEvent) -> jobs_pb2.JobEvent:
    return jobs_pb2.JobEvent(
        job_id=event.job_id,
        sequence=event.sequence,
        state=state_to_proto(event.state),
        step=event.step,
        percent=event.percent,
        message=event.message,
        metrics={k: float(v) for k, v in event.metrics.items()},
        time=timestamp(event.time),
    )


# -- datasets and variants -------------------------------------------------------------


def dataset_to_proto(record: DatasetRecord) -> datasets_pb2.Dataset:
    return datasets_pb2.Dataset(
        name=record.name,
        sha256=record.sha256,
        size_bytes=record.size_bytes,
        arrays=[tensor_to_proto(s) for s in record.arrays],
        num_samples=record.num_samples,
        has_labels=record.has_labels,
        description=record.description,
        created_at=timestamp(record.created_at),
    )


def _scalar_fields(cls: type[Message], data: Mapping[str, Any]) -> dict[str, Any]:
    """The known scalar fields of `data`, coerced to int/float/bool as the field is."""
    values: dict[str, Any] = {}
    for name, field in cls.DESCRIPTOR.fields_by_name.items():
        value = data.get(name)
        if value is None or field.message_type is not None:
            continue
        if field.cpp_type in _INT_TYPES:
            values[name] = int(value)
        elif field.cpp_type == FieldDescriptor.CPPTYPE_BOOL:
            values[name] = bool(value)
        elif field.cpp_type in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
            values[name] = float(value)
        else:
            values[name] = value
    return values


def measurement_to_proto(data: Mapping[str, Any]) -> variants_pb2.Measurement:
    """A Measurement from its dict form (as the evaluation writes it)."""
    message = variants_pb2.Measurement(**_scalar_fields(variants_pb2.Measurement, data))
    for entry in data.get("latency") or ():
        message.latency.add(**_scalar_fields(variants_pb2.LatencyStats, entry))
    quality = data.get("quality") or {}
    message.quality.update({k: float(v) for k, v in quality.items() if v is not None})
    return message


def format_to_proto(fmt: str) -> int:
    try:
        return common_pb2.ModelFormat.Value(formats.proto_enum_name(fmt))
    except ValueError:
        raise InvalidArgument(f"unknown model format {fmt!r}") from None


def format_from_proto(value: int, field: str = "format") -> str:
    """The stored format of a `ModelFormat` value; InvalidArgument naming `field`."""
    names = dict(common_pb2.ModelFormat.items())
    fmt = next((formats.from_proto_enum_name(n) for n, v in names.items() if v == value), "")
    if not fmt:
        known = ", ".join(formats.proto_enum_name(f) for f in formats.UPLOAD_FORMATS)
        raise InvalidArgument(f"{field} must be one of {known}, got {value}")
    return fmt


def variant_to_proto(record: VariantRecord) -> variants_pb2.Variant:
    return variants_pb2.Variant(
        id=record.id,
        serving_name=record.serving_name,
        parent_model=record.parent_model,
        parent_version=record.parent_version,
        job_id=record.job_id,
        recipe=recipe_to_proto(record.recipe),
        format=format_to_proto(record.format),
        sha256=record.sha256,
        inputs=[tensor_to_proto(s) for s in record.signature.inputs],
        outputs=[tensor_to_proto(s) for s in record.signature.outputs],
        metrics=measurement_to_proto(record.metrics),
        parent_metrics=measurement_to_proto(record.parent_metrics),
        budget_ok=record.budget_ok,
        budget_reason=record.budget_reason,
        report_json=json.dumps(record.report, sort_keys=True),
        created_at=timestamp(record.created_at),
    )


def header_to_request(header: models_pb2.UploadHeader) -> UploadRequest:
    return UploadRequest(
        name=header.name,
        format=format_from_proto(header.format, "header.format"),
        size_bytes=header.size_bytes,
        sha256=header.sha256,
        description=header.description,
        labels=dict(header.labels),
        new_version=header.new_version,
        task=header.task,
    )


def tensor_to_proto(spec: TensorSpec) -> common_pb2.TensorSpec:
    return common_pb2.TensorSpec(name=spec.name, datatype=spec.datatype, shape=list(spec.shape))


def model_to_proto(record: ModelRecord) -> models_pb2.Model:
    created = Timestamp()
    if record.created_at is not None:
        created.FromDatetime(record.created_at)
    return models_pb2.Model(
        name=record.name,
        version=record.version,
        format=format_to_proto(record.format),
        sha256=record.sha256,
        size_bytes=record.size_bytes,
        description=record.description,
        labels=record.labels,
        inputs=[tensor_to_proto(t) for t in record.served_signature.served_inputs],
        outputs=[tensor_to_proto(t) for t in record.signature.outputs],
        created_at=created,
        source=source_to_proto(record.source),
        text_input=text.name if (text := record.served_signature.text) is not None else "",
    )


def source_to_proto(source: ModelSource | None) -> models_pb2.ModelSource | None:
    if source is None:
        return None
    return models_pb2.ModelSource(
        format=format_to_proto(source.format),
        sha256=source.sha256,
        size_bytes=source.size_bytes,
        task=source.task,
        architecture=source.architecture,
        exporter=str(source.export.get("exporter", "")),
        export_max_abs_diff=float(source.export.get("max_abs_diff", 0.0)),
        max_tokens=int(source.text.get("max_tokens", 0)),
    )


def serving_config_from_proto(message: models_pb2.ServingConfig) -> dict[str, Any]:
    """The config's fields that were set (zero values keep their defaults)."""
    batching, warmup = message.batching, message.warmup
    data: dict[str, Any] = {"batching": {}, "warmup": {}}
    if batching.HasField("enabled"):
        data["batching"]["enabled"] = batching.enabled
    for field in ("max_batch_size", "max_queue_delay_us", "max_queue_size", "instances"):
        if getattr(batching, field):
            data["batching"][field] = getattr(batching, field)
    if batching.preferred_batch_sizes:
        data["batching"]["preferred_batch_sizes"] = list(batching.preferred_batch_sizes)
    if batching.pad_inputs:
        data["batching"]["pad_inputs"] = list(batching.pad_inputs)
    if warmup.HasField("runs"):
        data["warmup"]["runs"] = warmup.runs
    if warmup.batch_sizes:
        data["warmup"]["batch_sizes"] = list(warmup.batch_sizes)
    if warmup.dims:
        data["warmup"]["dims"] = {name: list(d.dims) for name, d in warmup.dims.items()}
    return data


def serving_config_to_proto(config: ServingConfig) -> models_pb2.ServingConfig:
    batching, warmup = config.batching, config.warmup
    message = models_pb2.ServingConfig(
        batching=models_pb2.BatchingConfig(
            max_batch_size=batching.max_batch_size,
            max_queue_delay_us=batching.max_queue_delay_us,
            preferred_batch_sizes=list(batching.preferred_batch_sizes),
            max_queue_size=batching.max_queue_size,
            pad_inputs=list(batching.pad_inputs),
            instances=batching.instances,
        ),
        warmup=models_pb2.WarmupConfig(runs=warmup.runs, batch_sizes=list(warmup.batch_sizes)),
    )
    if batching.enabled is not None:
        message.batching.enabled = batching.enabled
    for name, dims in warmup.dims.items():
        message.warmup.dims[name].dims.extend(dims)
    return message
