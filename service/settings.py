"""All process settings in one pydantic-settings class (environment prefix PARETO_)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, FilePath, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtimes.options import Threads

MiB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARETO_", extra="forbid", frozen=True)

    host: str = Field("0.0.0.0", description="Address the gRPC, REST and metrics servers bind to.")
    port: int = Field(8001, ge=0, le=65535, description="gRPC port (0 = pick a free one).")
    metrics_port: int = Field(8002, ge=0, le=65535, description="Prometheus /metrics HTTP port.")
    http_port: int = Field(
        8000,
        ge=-1,
        le=65535,
        description="KServe v2 REST port, Triton's HTTP port (-1 = off, 0 = pick a free one).",
    )
    health_port: int = Field(
        -1,
        ge=-1,
        le=65535,
        description="Plaintext port serving only grpc.health.v1 (-1 = off, 0 = pick a free one): "
        "for probes that cannot speak TLS, such as the kubelet's native gRPC probes.",
    )
    data_dir: Path = Field(Path(".pareto"), description="Blob store and metadata database.")
    max_model_bytes: int = Field(4 * 1024 * MiB, gt=0, description="Largest accepted upload.")
    max_expansion_ratio: float = Field(
        100.0,
        ge=1.0,
        le=100_000,
        description="An uploaded archive (bundle, .pt2, .npz) may unpack to at most this "
        "many times its size (and at least 64 MiB).",
    )
    max_tensor_elements: int = Field(
        1 << 28,
        ge=1024,
        description="Largest tensor an uploaded ONNX model may declare (inputs, outputs and "
        "what shape inference derives), in elements.",
    )
    helper_memory_bytes: int = Field(
        4 * 1024 * MiB,
        ge=256 * MiB,
        description="Address-space limit of each helper process (memory probe, .pt2 "
        "inspector, the load check at upload).",
    )
    max_helper_processes: int = Field(
        2, ge=1, le=64, description="Helper processes running at once; more wait their turn."
    )
    grpc_max_message_bytes: int = Field(
        64 * MiB, ge=4 * MiB, description="Largest gRPC message received or sent."
    )
    grpc_workers: int = Field(16, ge=1, le=1024, description="Threads serving ModelInfer calls.")
    http_workers: int = Field(
        16, ge=1, le=1024, description="Threads serving REST inference requests."
    )
    http_max_body_bytes: int = Field(
        64 * MiB,
        ge=64 * 1024,
        description="Largest REST request body (after decompression); larger ones are "
        "answered 413. JSON tensors take about 2-3 times their binary size.",
    )
    grpc_management_workers: int = Field(
        8, ge=1, le=256, description="Threads serving the other unary calls (management API)."
    )
    grpc_streams_per_kind: int = Field(
        16,
        ge=1,
        le=1024,
        description="Streams of each kind (streaming inference, uploads, reflection, "
        "watches) open at once; more are answered RESOURCE_EXHAUSTED.",
    )
    grpc_stream_idle_timeout_s: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="A stream whose client sends nothing for this long is cancelled.",
    )
    max_request_bytes: int = Field(
        16 * MiB,
        ge=1024,
        description="Largest inference request, in bytes of its decoded input tensors; "
        "larger ones are answered RESOURCE_EXHAUSTED.",
    )
    inference_memory_bytes: int = Field(
        4 * 1024 * MiB,
        ge=64 * MiB,
        description="Memory all inference of the process may use at once for the tensors "
        "it computes (ONNX Runtime's shared arena; weights not counted). A request that "
        "would need more is answered RESOURCE_EXHAUSTED.",
    )
    max_inflight_requests: int = Field(
        64,
        ge=1,
        description="Inference calls admitted at once (running or waiting for a gRPC thread); "
        "more are answered RESOURCE_EXHAUSTED at once.",
    )
    shutdown_grace_s: float = Field(
        5.0, ge=0, description="On SIGTERM: how long in-flight calls may take to finish."
    )
    shutdown_delay_s: float = Field(
        1.0,
        ge=0,
        le=600,
        description="On SIGTERM: how long the server goes on serving after it turned "
        "NOT_SERVING, before it stops taking calls (clients and load balancers see it first).",
    )
    ort_intra_op_threads: Threads = Field(0, description="ONNX Runtime intra-op threads.")
    ort_inter_op_threads: Threads = Field(0, description="ONNX Runtime inter-op threads.")
    ort_graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    load_on_demand: bool = Field(True, description="Load a model on its first inference.")
    measure_memory: bool = Field(
        True, description="Measure each loaded model's memory in a child process."
    )
    resolve_cache_s: float = Field(
        1.0,
        ge=0,
        description="How long a model name's resolution is reused (0 = look up every request); "
        "writes through this process are seen at once, other replicas' within this time.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    job_concurrency: int = Field(
        1, ge=0, le=64, description="Compression jobs run at once (0 = serve only, run none)."
    )
    job_threads: Threads = Field(1, ge=1, description="torch/ORT threads of one job's worker.")
    job_memory_limit_bytes: int = Field(
        8 * 1024 * MiB, ge=256 * MiB, description="Address-space limit of one job's worker."
    )
    job_timeout_s: float = Field(3600.0, gt=0, description="Wall-time limit of one job.")
    extra_technique_modules: str = Field(
        "", description="Comma-separated modules registering more techniques (plug-ins)."
    )
    job_max_attempts: int = Field(
        2, ge=1, description="Runs of a job interrupted by a restart before it is FAILED."
    )
    max_queued_jobs: int = Field(
        100, ge=1, description="QUEUED jobs at most; CreateJob beyond is RESOURCE_EXHAUSTED."
    )
    # Running a cluster (README): a shared metadata database, replicas, job leases.
    database_url: SecretStr = Field(
        SecretStr(""),
        description="Metadata database: empty = SQLite in the data dir; "
        "postgresql://user:password@host:port/database = PostgreSQL shared by replicas.",
    )
    replica_id: str = Field(
        default_factory=lambda: socket.gethostname() or "localhost",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$",
        description="This replica's name on the jobs it claims (default: the host name, "
        "a pod's name on Kubernetes).",
    )
    job_lease_s: float = Field(
        30.0,
        gt=0,
        description="A RUNNING job whose replica has not renewed its lease for this long is "
        "re-queued by any replica.",
    )
    # Running on Ray (docs/operations.md "Running on Ray").
    ray_address: str = Field(
        "",
        pattern=r"^((ray://)?[A-Za-z0-9_.\[\]:-]+:[0-9]{1,5})?$",
        description="Ray cluster that runs jobs and search trials: its head's address "
        "host:port (GCS, default port 6379) or ray://host:10001 (Ray Client); empty = worker "
        "processes of this replica. Needs PARETO_DATABASE_URL (PostgreSQL) and the data dir "
        "mounted at the same path on every Ray node.",
    )
    # Security (README "Security"): all off by default.
    auth_tokens_file: FilePath | None = Field(
        None, description="Bearer tokens with scopes; set = every non-open call needs one."
    )
    tls_cert_file: FilePath | None = Field(None, description="PEM certificate chain: TLS on.")
    tls_key_file: FilePath | None = Field(None, description="PEM private key of the cert.")
    tls_client_ca_file: FilePath | None = Field(
        None, description="PEM CA bundle: clients must present a cert it signed (mTLS)."
    )

    runtime_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Default options per runtime name, JSON (e.g. triton_remote url).",
    )

    # Deployments (README "A/B serving").
    shadow_queue_size: int = Field(
        64, ge=1, description="Shadow copies waiting to run; more are dropped and counted."
    )
    shadow_workers: int = Field(1, ge=1, le=64, description="Threads running shadow copies.")
    deployment_sync_s: float = Field(
        2.0,
        gt=0,
        description="With a shared database: how often deployments changed by other "
        "replicas are adopted.",
    )
    canary_interval_s: float = Field(
        1.0, gt=0, description="How often running canary plans are judged."
    )
    route_stats_window: int = Field(
        4096, ge=16, description="Latency samples kept per deployment target (report, canary)."
    )

    def technique_modules(self) -> list[str]:
        """PARETO_EXTRA_TECHNIQUE_MODULES as a list of module names."""
        return [m.strip() for m in self.extra_technique_modules.split(",") if m.strip()]

    def ort_options(self) -> dict[str, Any]:
        """Session options handed to the ONNX Runtime CPU runtime."""
        return {
            "intra_op_threads": self.ort_intra_op_threads,
            "inter_op_threads": self.ort_inter_op_threads,
            "graph_optimization_level": self.ort_graph_optimization_level,
        }

    def runtime_defaults(self) -> dict[str, dict[str, Any]]:
        """Default options per runtime (runtimes/options.py): PARETO_RUNTIME_OPTIONS, with
        the PARETO_ORT_* settings over it for onnxruntime_cpu."""
        defaults = {name: dict(options) for name, options in self.runtime_options.items()}
        defaults["onnxruntime_cpu"] = {**defaults.get("onnxruntime_cpu", {}), **self.ort_options()}
        return defaults


class SettingsError(ValueError):
    """Bad settings; the message names each offending setting as its environment variable."""


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment plus explicit overrides (e.g. CLI flags)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            problems.append(f"PARETO_{field.upper()} (--{field.replace('_', '-')}): {err['msg']}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems)) from None
