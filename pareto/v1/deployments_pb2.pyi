import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_PRIMARY: _ClassVar[Role]
    ROLE_SHADOW: _ClassVar[Role]

class CanaryState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CANARY_STATE_UNSPECIFIED: _ClassVar[CanaryState]
    CANARY_STATE_RUNNING: _ClassVar[CanaryState]
    CANARY_STATE_PROMOTED: _ClassVar[CanaryState]
    CANARY_STATE_ROLLED_BACK: _ClassVar[CanaryState]
    CANARY_STATE_CANCELLED: _ClassVar[CanaryState]
ROLE_UNSPECIFIED: Role
ROLE_PRIMARY: Role
ROLE_SHADOW: Role
CANARY_STATE_UNSPECIFIED: CanaryState
CANARY_STATE_RUNNING: CanaryState
CANARY_STATE_PROMOTED: CanaryState
CANARY_STATE_ROLLED_BACK: CanaryState
CANARY_STATE_CANCELLED: CanaryState

class Target(_message.Message):
    __slots__ = ("name", "model_version", "runtime", "runtime_options", "weight", "role", "sample_rate")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    name: str
    model_version: str
    runtime: str
    runtime_options: _struct_pb2.Struct
    weight: float
    role: Role
    sample_rate: float
    def __init__(self, name: _Optional[str] = ..., model_version: _Optional[str] = ..., runtime: _Optional[str] = ..., runtime_options: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., weight: _Optional[float] = ..., role: _Optional[_Union[Role, str]] = ..., sample_rate: _Optional[float] = ...) -> None: ...

class CanaryPlan(_message.Message):
    __slots__ = ("canary", "steps", "min_requests", "dwell_seconds", "max_p99_latency_ratio", "max_error_rate_increase", "min_agreement", "agreement_measure")
    CANARY_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    MIN_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    DWELL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_P99_LATENCY_RATIO_FIELD_NUMBER: _ClassVar[int]
    MAX_ERROR_RATE_INCREASE_FIELD_NUMBER: _ClassVar[int]
    MIN_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_MEASURE_FIELD_NUMBER: _ClassVar[int]
    canary: str
    steps: _containers.RepeatedScalarFieldContainer[float]
    min_requests: int
    dwell_seconds: float
    max_p99_latency_ratio: float
    max_error_rate_increase: float
    min_agreement: float
    agreement_measure: str
    def __init__(self, canary: _Optional[str] = ..., steps: _Optional[_Iterable[float]] = ..., min_requests: _Optional[int] = ..., dwell_seconds: _Optional[float] = ..., max_p99_latency_ratio: _Optional[float] = ..., max_error_rate_increase: _Optional[float] = ..., min_agreement: _Optional[float] = ..., agreement_measure: _Optional[str] = ...) -> None: ...

class CanaryStatus(_message.Message):
    __slots__ = ("state", "step", "reason", "updated_at")
    STATE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    state: CanaryState
    step: int
    reason: str
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, state: _Optional[_Union[CanaryState, str]] = ..., step: _Optional[int] = ..., reason: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Deployment(_message.Message):
    __slots__ = ("name", "model", "targets", "canary", "canary_status", "revision", "created_at", "updated_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    CANARY_STATUS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: str
    targets: _containers.RepeatedCompositeFieldContainer[Target]
    canary: CanaryPlan
    canary_status: CanaryStatus
    revision: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., model: _Optional[str] = ..., targets: _Optional[_Iterable[_Union[Target, _Mapping]]] = ..., canary: _Optional[_Union[CanaryPlan, _Mapping]] = ..., canary_status: _Optional[_Union[CanaryStatus, _Mapping]] = ..., revision: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateDeploymentRequest(_message.Message):
    __slots__ = ("name", "model", "targets", "canary")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: str
    targets: _containers.RepeatedCompositeFieldContainer[Target]
    canary: CanaryPlan
    def __init__(self, name: _Optional[str] = ..., model: _Optional[str] = ..., targets: _Optional[_Iterable[_Union[Target, _Mapping]]] = ..., canary: _Optional[_Union[CanaryPlan, _Mapping]] = ...) -> None: ...

class UpdateTrafficRequest(_message.Message):
    __slots__ = ("name", "weights", "canary")
    class WeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    name: str
    weights: _containers.ScalarMap[str, float]
    canary: CanaryPlan
    def __init__(self, name: _Optional[str] = ..., weights: _Optional[_Mapping[str, float]] = ..., canary: _Optional[_Union[CanaryPlan, _Mapping]] = ...) -> None: ...

class GetDeploymentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListDeploymentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDeploymentsResponse(_message.Message):
    __slots__ = ("deployments",)
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedCompositeFieldContainer[Deployment]
    def __init__(self, deployments: _Optional[_Iterable[_Union[Deployment, _Mapping]]] = ...) -> None: ...

class DeleteDeploymentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetDeploymentReportRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class Estimate(_message.Message):
    __slots__ = ("value", "low", "high")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    value: float
    low: float
    high: float
    def __init__(self, value: _Optional[float] = ..., low: _Optional[float] = ..., high: _Optional[float] = ...) -> None: ...

class Comparison(_message.Message):
    __slots__ = ("p_value", "significant")
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    SIGNIFICANT_FIELD_NUMBER: _ClassVar[int]
    p_value: float
    significant: bool
    def __init__(self, p_value: _Optional[float] = ..., significant: _Optional[bool] = ...) -> None: ...

class TargetReport(_message.Message):
    __slots__ = ("target", "model_version", "variant", "runtime", "role", "weight", "requests", "errors", "error_rate", "latency_samples", "p50_ms", "p99_ms", "comparisons", "top1_agreement", "cosine_mean", "max_abs_diff", "shadow_dropped", "latency_test", "error_test")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    P50_MS_FIELD_NUMBER: _ClassVar[int]
    P99_MS_FIELD_NUMBER: _ClassVar[int]
    COMPARISONS_FIELD_NUMBER: _ClassVar[int]
    TOP1_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    COSINE_MEAN_FIELD_NUMBER: _ClassVar[int]
    MAX_ABS_DIFF_FIELD_NUMBER: _ClassVar[int]
    SHADOW_DROPPED_FIELD_NUMBER: _ClassVar[int]
    LATENCY_TEST_FIELD_NUMBER: _ClassVar[int]
    ERROR_TEST_FIELD_NUMBER: _ClassVar[int]
    target: str
    model_version: str
    variant: str
    runtime: str
    role: Role
    weight: float
    requests: int
    errors: int
    error_rate: float
    latency_samples: int
    p50_ms: Estimate
    p99_ms: Estimate
    comparisons: int
    top1_agreement: float
    cosine_mean: float
    max_abs_diff: float
    shadow_dropped: int
    latency_test: Comparison
    error_test: Comparison
    def __init__(self, target: _Optional[str] = ..., model_version: _Optional[str] = ..., variant: _Optional[str] = ..., runtime: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., weight: _Optional[float] = ..., requests: _Optional[int] = ..., errors: _Optional[int] = ..., error_rate: _Optional[float] = ..., latency_samples: _Optional[int] = ..., p50_ms: _Optional[_Union[Estimate, _Mapping]] = ..., p99_ms: _Optional[_Union[Estimate, _Mapping]] = ..., comparisons: _Optional[int] = ..., top1_agreement: _Optional[float] = ..., cosine_mean: _Optional[float] = ..., max_abs_diff: _Optional[float] = ..., shadow_dropped: _Optional[int] = ..., latency_test: _Optional[_Union[Comparison, _Mapping]] = ..., error_test: _Optional[_Union[Comparison, _Mapping]] = ...) -> None: ...

class DeploymentReport(_message.Message):
    __slots__ = ("name", "baseline", "targets", "method", "alpha", "canary_status")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    CANARY_STATUS_FIELD_NUMBER: _ClassVar[int]
    name: str
    baseline: str
    targets: _containers.RepeatedCompositeFieldContainer[TargetReport]
    method: str
    alpha: float
    canary_status: CanaryStatus
    def __init__(self, name: _Optional[str] = ..., baseline: _Optional[str] = ..., targets: _Optional[_Iterable[_Union[TargetReport, _Mapping]]] = ..., method: _Optional[str] = ..., alpha: _Optional[float] = ..., canary_status: _Optional[_Union[CanaryStatus, _Mapping]] = ...) -> None: ...
