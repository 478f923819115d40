import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from pareto.v1 import common_pb2 as _common_pb2
from pareto.v1 import jobs_pb2 as _jobs_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Measurement(_message.Message):
    __slots__ = ("size_bytes", "compressed_size_bytes", "parameters", "sparsity", "latency", "memory_bytes", "quality", "runtime", "device")
    class QualityEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    COMPRESSED_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SPARSITY_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    size_bytes: int
    compressed_size_bytes: int
    parameters: int
    sparsity: float
    latency: _containers.RepeatedCompositeFieldContainer[LatencyStats]
    memory_bytes: int
    quality: _containers.ScalarMap[str, float]
    runtime: str
    device: str
    def __init__(self, size_bytes: _Optional[int] = ..., compressed_size_bytes: _Optional[int] = ..., parameters: _Optional[int] = ..., sparsity: _Optional[float] = ..., latency: _Optional[_Iterable[_Union[LatencyStats, _Mapping]]] = ..., memory_bytes: _Optional[int] = ..., quality: _Optional[_Mapping[str, float]] = ..., runtime: _Optional[str] = ..., device: _Optional[str] = ...) -> None: ...

class LatencyStats(_message.Message):
    __slots__ = ("batch_size", "p50_ms", "p90_ms", "p99_ms", "throughput_per_s")
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    P50_MS_FIELD_NUMBER: _ClassVar[int]
    P90_MS_FIELD_NUMBER: _ClassVar[int]
    P99_MS_FIELD_NUMBER: _ClassVar[int]
    THROUGHPUT_PER_S_FIELD_NUMBER: _ClassVar[int]
    batch_size: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput_per_s: float
    def __init__(self, batch_size: _Optional[int] = ..., p50_ms: _Optional[float] = ..., p90_ms: _Optional[float] = ..., p99_ms: _Optional[float] = ..., throughput_per_s: _Optional[float] = ...) -> None: ...

class Variant(_message.Message):
    __slots__ = ("id", "serving_name", "parent_model", "parent_version", "job_id", "recipe", "format", "sha256", "inputs", "outputs", "metrics", "parent_metrics", "budget_ok", "budget_reason", "report_json", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    SERVING_NAME_FIELD_NUMBER: _ClassVar[int]
    PARENT_MODEL_FIELD_NUMBER: _ClassVar[int]
    PARENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    PARENT_METRICS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_OK_FIELD_NUMBER: _ClassVar[int]
    BUDGET_REASON_FIELD_NUMBER: _ClassVar[int]
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    serving_name: str
    parent_model: str
    parent_version: int
    job_id: str
    recipe: _jobs_pb2.Recipe
    format: _common_pb2.ModelFormat
    sha256: str
    inputs: _containers.RepeatedCompositeFieldContainer[_common_pb2.TensorSpec]
    outputs: _containers.RepeatedCompositeFieldContainer[_common_pb2.TensorSpec]
    metrics: Measurement
    parent_metrics: Measurement
    budget_ok: bool
    budget_reason: str
    report_json: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., serving_name: _Optional[str] = ..., parent_model: _Optional[str] = ..., parent_version: _Optional[int] = ..., job_id: _Optional[str] = ..., recipe: _Optional[_Union[_jobs_pb2.Recipe, _Mapping]] = ..., format: _Optional[_Union[_common_pb2.ModelFormat, str]] = ..., sha256: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[_common_pb2.TensorSpec, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[_common_pb2.TensorSpec, _Mapping]]] = ..., metrics: _Optional[_Union[Measurement, _Mapping]] = ..., parent_metrics: _Optional[_Union[Measurement, _Mapping]] = ..., budget_ok: _Optional[bool] = ..., budget_reason: _Optional[str] = ..., report_json: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListVariantsRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class ListVariantsResponse(_message.Message):
    __slots__ = ("variants",)
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    variants: _containers.RepeatedCompositeFieldContainer[Variant]
    def __init__(self, variants: _Optional[_Iterable[_Union[Variant, _Mapping]]] = ...) -> None: ...

class GetVariantRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteVariantRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...
