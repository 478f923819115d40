"""Every Prometheus metric of the gateway, defined once at module level.

Labels are bounded: `model` is an uploaded model's name, `variant` the served version
("v1", "v2", ... and later variant ids), `runtime` a registered runtime name, `code` a gRPC
status code name. Request ids and tensor contents never become labels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge, Histogram

from pareto_core.errors import ParetoError
from runtimes.artifacts import CacheEvents
from runtimes.memory_probe import MEMORY_METHOD

_SERVING = ("model", "variant", "runtime")

# Sub-millisecond buckets matter: small models answer in ~100 us on a CPU.
_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

INFERENCE_DURATION = Histogram(
    "pareto_inference_request_duration_seconds",
    "Time from receiving an inference request to having its response, in seconds.",
    _SERVING,
    buckets=_LATENCY_BUCKETS,
)
INFERENCE_REQUESTS = Counter(
    "pareto_inference_requests",
    "Inference requests by final gRPC status code.",
    (*_SERVING, "code"),
)
INFERENCE_QUEUE_DURATION = Histogram(
    "pareto_inference_queue_duration_seconds",
    "Time a request waited before the runtime started on it (decoding, validation and, on "
    "a cold model, loading it), in seconds.",
    _SERVING,
    buckets=_LATENCY_BUCKETS,
)
INFERENCE_BATCH_SIZE = Histogram(
    "pareto_inference_batch_size",
    "Rows per run of the model: the size of a dynamic batch (1 for a request alone).",
    _SERVING,
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
)
INFERENCE_IN_FLIGHT = Gauge(
    "pareto_inference_in_flight",
    "Inference calls admitted and not finished (gRPC and REST; waiting for a thread or "
    "running); at most PARETO_MAX_INFLIGHT_REQUESTS.",
)
GRPC_CALLS_ACTIVE = Gauge(
    "pareto_grpc_calls_active",
    "gRPC calls admitted and not finished, by kind (health, inference, management, "
    "stream_infer, upload, reflection, watch): each kind has its own threads.",
    ("kind",),
)
GRPC_CALLS_REFUSED = Counter(
    "pareto_grpc_calls_refused",
    "gRPC calls refused by their kind's limits: RESOURCE_EXHAUSTED at once (reason limit: "
    "PARETO_GRPC_STREAMS_PER_KIND calls of that kind open) or streams cancelled after "
    "sending nothing for PARETO_GRPC_STREAM_IDLE_TIMEOUT_S (reason idle).",
    ("kind", "reason"),
)
INFERENCE_REJECTED = Counter(
    "pareto_inference_rejected",
    "Inference calls answered RESOURCE_EXHAUSTED without running, by reason (max_inflight: "
    "PARETO_MAX_INFLIGHT_REQUESTS calls were already in flight).",
    ("reason",),
)
MODEL_SIZE = Gauge(
    "pareto_model_size_bytes",
    "Size of the stored model file (or bundle) of a loaded model, in bytes.",
    _SERVING,
)
MODEL_MEMORY = Gauge(
    "pareto_model_memory_bytes",
    f"Resident memory the loaded model adds, in bytes. {MEMORY_METHOD}",
    _SERVING,
)
MODEL_LOAD_DURATION = Histogram(
    "pareto_model_load_duration_seconds",
    "Time to load a model into its runtime session, in seconds.",
    _SERVING,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)
MODEL_LOADED = Gauge(
    "pareto_model_loaded",
    "1 while the model is loaded and ready to serve.",
    _SERVING,
)
RUNTIME_BUILD_DURATION = Histogram(
    "pareto_runtime_build_duration_seconds",
    "Time a runtime took to build what it loads (TensorRT engine, int8 .tflite), in seconds.",
    ("runtime",),
    buckets=(0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0),
)
RUNTIME_INFO = Gauge(
    "pareto_runtime_info",
    "1 for each runtime that loaded a model, labelled with the device it really runs on "
    "(e.g. edgetpu_tflite on cpu-fallback) and its version.",
    ("runtime", "device", "version", "accelerated"),
)
RUNTIME_CACHE_HITS = Counter(
    "pareto_runtime_artifact_cache_hits",
    "Prepares that reused a built artifact from the store.",
    ("runtime",),
)
RUNTIME_CACHE_MISSES = Counter(
    "pareto_runtime_artifact_cache_misses",
    "Prepares that had to build the artifact.",
    ("runtime",),
)
# Deployments (A/B serving): `model` is the endpoint name, `role` primary or shadow.
_ROUTED = ("model", "variant", "runtime", "role")
ENDPOINT_DURATION = Histogram(
    "pareto_endpoint_request_duration_seconds",
    "Time to answer a request routed by a deployment (shadow copies: to run them), in seconds.",
    _ROUTED,
    buckets=_LATENCY_BUCKETS,
)
ENDPOINT_REQUESTS = Counter(
    "pareto_endpoint_requests",
    "Requests routed by a deployment (and shadow copies run) by final gRPC status code.",
    (*_ROUTED, "code"),
)
TRAFFIC_WEIGHT = Gauge(
    "pareto_variant_traffic_weight",
    "Percent of the endpoint's traffic a target answers (shadows: 0).",
    _ROUTED,
)
SHADOW_AGREEMENT = Histogram(
    "pareto_shadow_agreement",
    "Agreement of two targets' answers to one request (measure: top1 = fraction of rows "
    "with the same argmax, cosine = mean row cosine); recorded for both targets.",
    (*_ROUTED, "measure"),
    buckets=(0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999, 1.0),
)
SHADOW_MAX_ABS_DIFF = Histogram(
    "pareto_shadow_max_abs_diff",
    "Largest element-wise difference of two targets' answers to one request.",
    _ROUTED,
    buckets=(1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0),
)
SHADOW_DROPPED = Counter(
    "pareto_shadow_dropped",
    "Copies of requests not compared because the shadow queue was full.",
    _ROUTED,
)
CANARY_STEP = Gauge(
    "pareto_canary_step",
    "Current step (1-based) of the canary target's rollout plan; 0 after a rollback.",
    _ROUTED,
)
ROLLBACKS = Counter(
    "pareto_rollbacks",
    "Automatic canary rollbacks, by the SLO broken (error_rate, latency, agreement).",
    (*_ROUTED, "reason"),
)
JOBS = Gauge(
    "pareto_jobs",
    "Compression jobs in the store by state (QUEUED, RUNNING, SUCCEEDED, FAILED, "
    "CANCELLED), counted by the gateway's job scheduler every few seconds. With a shared "
    "database every replica reports the same cluster-wide counts: aggregate with max.",
    ("state",),
)
UPLOADS = Counter(
    "pareto_uploads",
    "Model uploads by final gRPC status code.",
    ("code",),
)
UPLOAD_BYTES = Counter(
    "pareto_upload_bytes",
    "Bytes received in model uploads, whether or not the upload succeeded.",
)


@dataclass
class ModelMeters:
    """One loaded model's per-request metrics, bound to its labels once at load: every
    `labels()` call takes a lock and a lookup, several times per request otherwise."""

    labels: tuple[str, str, str]
    duration: Histogram = field(init=False)
    queue: Histogram = field(init=False)
    batch_size: Histogram = field(init=False)
    _requests: dict[str, Counter] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.duration = INFERENCE_DURATION.labels(*self.labels)
        self.queue = INFERENCE_QUEUE_DURATION.labels(*self.labels)
        self.batch_size = INFERENCE_BATCH_SIZE.labels(*self.labels)

    def requests(self, code: str) -> Counter:
        counter = self._requests.get(code)
        if counter is None:
            counter = self._requests[code] = INFERENCE_REQUESTS.labels(*self.labels, code)
        return counter


@contextmanager
def count_outcome(record: Callable[[str], None]) -> Iterator[None]:
    """Call `record(code)` with the gRPC status code name the block ends with."""
    code = "OK"
    try:
        yield
    except ParetoError as exc:
        code = exc.code
        raise
    except Exception:
        code = "INTERNAL"
        raise
    finally:
        record(code)


def _artifact_looked_up(runtime: str, hit: bool) -> None:
    (RUNTIME_CACHE_HITS if hit else RUNTIME_CACHE_MISSES).labels(runtime).inc()


def _artifact_built(runtime: str, seconds: float) -> None:
    RUNTIME_BUILD_DURATION.labels(runtime).observe(seconds)


# What the runtimes' artifact cache reports, into the metrics above.
ARTIFACT_CACHE_EVENTS = CacheEvents(looked_up=_artifact_looked_up, built=_artifact_built)
