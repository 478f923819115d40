"""Every Prometheus metric of the gateway, defined once at module level.

Labels are bounded: `model` is an uploaded model's name, `variant` the served version
("v1", "v2", ... and later variant ids), `runtime` a registered runtime name, `code` a gRPC
status code name. Request ids and tensor contents never become labels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

from runtimes.memory_probe import MEMORY_METHOD
from service.errors import ParetoError

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
UPLOADS = Counter(
    "pareto_uploads",
    "Model uploads by final gRPC status code.",
    ("code",),
)
UPLOAD_BYTES = Counter(
    "pareto_upload_bytes",
    "Bytes received in model uploads, whether or not the upload succeeded.",
)


@contextmanager
def count_outcome(record: Callable[[str], None]) -> Iterator[None]:
    """Call `record(code)` with the gRPC status code name the block ends with."""
    code = "OK"
    try:
        yield
    except ParetoError as exc:
        code = exc.code.name
        raise
    except Exception:
        code = "INTERNAL"
        raise
    finally:
        record(code)
