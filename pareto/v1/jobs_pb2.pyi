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

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]

class TrialState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRIAL_STATE_UNSPECIFIED: _ClassVar[TrialState]
    TRIAL_STATE_RUNNING: _ClassVar[TrialState]
    TRIAL_STATE_COMPLETE: _ClassVar[TrialState]
    TRIAL_STATE_PRUNED: _ClassVar[TrialState]
    TRIAL_STATE_FAILED: _ClassVar[TrialState]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
TRIAL_STATE_UNSPECIFIED: TrialState
TRIAL_STATE_RUNNING: TrialState
TRIAL_STATE_COMPLETE: TrialState
TRIAL_STATE_PRUNED: TrialState
TRIAL_STATE_FAILED: TrialState

class RecipeStep(_message.Message):
    __slots__ = ("technique", "config")
    TECHNIQUE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    technique: str
    config: _struct_pb2.Struct
    def __init__(self, technique: _Optional[str] = ..., config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Recipe(_message.Message):
    __slots__ = ("name", "steps")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    name: str
    steps: _containers.RepeatedCompositeFieldContainer[RecipeStep]
    def __init__(self, name: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[RecipeStep, _Mapping]]] = ...) -> None: ...

class QualityBudget(_message.Message):
    __slots__ = ("max_accuracy_drop", "min_cosine", "min_top1_agreement", "keep_failing")
    MAX_ACCURACY_DROP_FIELD_NUMBER: _ClassVar[int]
    MIN_COSINE_FIELD_NUMBER: _ClassVar[int]
    MIN_TOP1_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    KEEP_FAILING_FIELD_NUMBER: _ClassVar[int]
    max_accuracy_drop: float
    min_cosine: float
    min_top1_agreement: float
    keep_failing: bool
    def __init__(self, max_accuracy_drop: _Optional[float] = ..., min_cosine: _Optional[float] = ..., min_top1_agreement: _Optional[float] = ..., keep_failing: _Optional[bool] = ...) -> None: ...

class EvaluationSettings(_message.Message):
    __slots__ = ("batch_sizes", "iterations", "runtime")
    BATCH_SIZES_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    batch_sizes: _containers.RepeatedScalarFieldContainer[int]
    iterations: int
    runtime: str
    def __init__(self, batch_sizes: _Optional[_Iterable[int]] = ..., iterations: _Optional[int] = ..., runtime: _Optional[str] = ...) -> None: ...

class CreateJobRequest(_message.Message):
    __slots__ = ("model", "model_version", "recipes", "datasets", "quality_budget", "evaluation", "search")
    class DatasetsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RECIPES_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    QUALITY_BUDGET_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: int
    recipes: _containers.RepeatedCompositeFieldContainer[Recipe]
    datasets: _containers.ScalarMap[str, str]
    quality_budget: QualityBudget
    evaluation: EvaluationSettings
    search: SearchSpec
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[int] = ..., recipes: _Optional[_Iterable[_Union[Recipe, _Mapping]]] = ..., datasets: _Optional[_Mapping[str, str]] = ..., quality_budget: _Optional[_Union[QualityBudget, _Mapping]] = ..., evaluation: _Optional[_Union[EvaluationSettings, _Mapping]] = ..., search: _Optional[_Union[SearchSpec, _Mapping]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "model", "model_version", "recipes", "datasets", "quality_budget", "evaluation", "state", "reason", "percent", "variant_ids", "attempts", "created_at", "started_at", "finished_at", "search")
    class DatasetsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RECIPES_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    QUALITY_BUDGET_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    VARIANT_IDS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    id: str
    model: str
    model_version: int
    recipes: _containers.RepeatedCompositeFieldContainer[Recipe]
    datasets: _containers.ScalarMap[str, str]
    quality_budget: QualityBudget
    evaluation: EvaluationSettings
    state: JobState
    reason: str
    percent: float
    variant_ids: _containers.RepeatedScalarFieldContainer[str]
    attempts: int
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    search: SearchSpec
    def __init__(self, id: _Optional[str] = ..., model: _Optional[str] = ..., model_version: _Optional[int] = ..., recipes: _Optional[_Iterable[_Union[Recipe, _Mapping]]] = ..., datasets: _Optional[_Mapping[str, str]] = ..., quality_budget: _Optional[_Union[QualityBudget, _Mapping]] = ..., evaluation: _Optional[_Union[EvaluationSettings, _Mapping]] = ..., state: _Optional[_Union[JobState, str]] = ..., reason: _Optional[str] = ..., percent: _Optional[float] = ..., variant_ids: _Optional[_Iterable[str]] = ..., attempts: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., search: _Optional[_Union[SearchSpec, _Mapping]] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "sequence", "state", "step", "percent", "message", "metrics", "time")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    sequence: int
    state: JobState
    step: str
    percent: float
    message: str
    metrics: _containers.ScalarMap[str, float]
    time: _timestamp_pb2.Timestamp
    def __init__(self, job_id: _Optional[str] = ..., sequence: _Optional[int] = ..., state: _Optional[_Union[JobState, str]] = ..., step: _Optional[str] = ..., percent: _Optional[float] = ..., message: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("id", "from_sequence")
    ID_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    id: str
    from_sequence: int
    def __init__(self, id: _Optional[str] = ..., from_sequence: _Optional[int] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class SearchConstraints(_message.Message):
    __slots__ = ("max_quality_drop", "max_latency_ms", "max_size_bytes", "max_memory_bytes")
    MAX_QUALITY_DROP_FIELD_NUMBER: _ClassVar[int]
    MAX_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    max_quality_drop: float
    max_latency_ms: float
    max_size_bytes: int
    max_memory_bytes: int
    def __init__(self, max_quality_drop: _Optional[float] = ..., max_latency_ms: _Optional[float] = ..., max_size_bytes: _Optional[int] = ..., max_memory_bytes: _Optional[int] = ...) -> None: ...

class SearchSpec(_message.Message):
    __slots__ = ("objectives", "batch_size", "constraints", "n_trials", "timeout_s", "techniques", "sampler", "seed", "max_steps", "resume_from", "parallelism")
    OBJECTIVES_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    N_TRIALS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    TECHNIQUES_FIELD_NUMBER: _ClassVar[int]
    SAMPLER_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    RESUME_FROM_FIELD_NUMBER: _ClassVar[int]
    PARALLELISM_FIELD_NUMBER: _ClassVar[int]
    objectives: _containers.RepeatedScalarFieldContainer[str]
    batch_size: int
    constraints: SearchConstraints
    n_trials: int
    timeout_s: float
    techniques: _containers.RepeatedScalarFieldContainer[str]
    sampler: str
    seed: int
    max_steps: int
    resume_from: str
    parallelism: int
    def __init__(self, objectives: _Optional[_Iterable[str]] = ..., batch_size: _Optional[int] = ..., constraints: _Optional[_Union[SearchConstraints, _Mapping]] = ..., n_trials: _Optional[int] = ..., timeout_s: _Optional[float] = ..., techniques: _Optional[_Iterable[str]] = ..., sampler: _Optional[str] = ..., seed: _Optional[int] = ..., max_steps: _Optional[int] = ..., resume_from: _Optional[str] = ..., parallelism: _Optional[int] = ...) -> None: ...

class GetSearchRequest(_message.Message):
    __slots__ = ("id", "model")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    id: str
    model: str
    def __init__(self, id: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class TrialMetrics(_message.Message):
    __slots__ = ("quality", "quality_drop", "latency_p50_ms", "latency_p99_ms", "size_bytes", "compressed_size_bytes", "memory_bytes")
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    QUALITY_DROP_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P99_MS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    COMPRESSED_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    quality: float
    quality_drop: float
    latency_p50_ms: float
    latency_p99_ms: float
    size_bytes: int
    compressed_size_bytes: int
    memory_bytes: int
    def __init__(self, quality: _Optional[float] = ..., quality_drop: _Optional[float] = ..., latency_p50_ms: _Optional[float] = ..., latency_p99_ms: _Optional[float] = ..., size_bytes: _Optional[int] = ..., compressed_size_bytes: _Optional[int] = ..., memory_bytes: _Optional[int] = ...) -> None: ...

class SearchTrial(_message.Message):
    __slots__ = ("number", "state", "job_id", "recipe", "metrics", "parent", "objectives", "feasible", "violations", "frontier", "variant_id", "message", "cached_steps", "seconds", "standing", "worker")
    class ObjectivesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVES_FIELD_NUMBER: _ClassVar[int]
    FEASIBLE_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    FRONTIER_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CACHED_STEPS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    STANDING_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    number: int
    state: TrialState
    job_id: str
    recipe: Recipe
    metrics: TrialMetrics
    parent: TrialMetrics
    objectives: _containers.ScalarMap[str, float]
    feasible: bool
    violations: _containers.RepeatedScalarFieldContainer[str]
    frontier: bool
    variant_id: str
    message: str
    cached_steps: int
    seconds: float
    standing: str
    worker: str
    def __init__(self, number: _Optional[int] = ..., state: _Optional[_Union[TrialState, str]] = ..., job_id: _Optional[str] = ..., recipe: _Optional[_Union[Recipe, _Mapping]] = ..., metrics: _Optional[_Union[TrialMetrics, _Mapping]] = ..., parent: _Optional[_Union[TrialMetrics, _Mapping]] = ..., objectives: _Optional[_Mapping[str, float]] = ..., feasible: _Optional[bool] = ..., violations: _Optional[_Iterable[str]] = ..., frontier: _Optional[bool] = ..., variant_id: _Optional[str] = ..., message: _Optional[str] = ..., cached_steps: _Optional[int] = ..., seconds: _Optional[float] = ..., standing: _Optional[str] = ..., worker: _Optional[str] = ...) -> None: ...

class SearchResult(_message.Message):
    __slots__ = ("job_id", "model", "model_version", "state", "reason", "spec", "study_name", "quality_metric", "objectives", "quality_budget", "parent", "trials", "frontier", "recommended_trial", "recommended_variant", "closest_trial", "message")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STUDY_NAME_FIELD_NUMBER: _ClassVar[int]
    QUALITY_METRIC_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVES_FIELD_NUMBER: _ClassVar[int]
    QUALITY_BUDGET_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    FRONTIER_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDED_TRIAL_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDED_VARIANT_FIELD_NUMBER: _ClassVar[int]
    CLOSEST_TRIAL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    model: str
    model_version: int
    state: JobState
    reason: str
    spec: SearchSpec
    study_name: str
    quality_metric: str
    objectives: _containers.RepeatedScalarFieldContainer[str]
    quality_budget: QualityBudget
    parent: TrialMetrics
    trials: _containers.RepeatedCompositeFieldContainer[SearchTrial]
    frontier: _containers.RepeatedScalarFieldContainer[int]
    recommended_trial: int
    recommended_variant: str
    closest_trial: int
    message: str
    def __init__(self, job_id: _Optional[str] = ..., model: _Optional[str] = ..., model_version: _Optional[int] = ..., state: _Optional[_Union[JobState, str]] = ..., reason: _Optional[str] = ..., spec: _Optional[_Union[SearchSpec, _Mapping]] = ..., study_name: _Optional[str] = ..., quality_metric: _Optional[str] = ..., objectives: _Optional[_Iterable[str]] = ..., quality_budget: _Optional[_Union[QualityBudget, _Mapping]] = ..., parent: _Optional[_Union[TrialMetrics, _Mapping]] = ..., trials: _Optional[_Iterable[_Union[SearchTrial, _Mapping]]] = ..., frontier: _Optional[_Iterable[int]] = ..., recommended_trial: _Optional[int] = ..., recommended_variant: _Optional[str] = ..., closest_trial: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...
