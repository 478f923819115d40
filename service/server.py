"""Builds and runs the gateway: one gRPC port for everything, KServe v2 REST on a port of
its own, metrics on HTTP."""

from __future__ import annotations

import logging
import threading
import time
from concurrent import futures
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server
from tritonclient.grpc import service_pb2 as kserve_pb
from tritonclient.grpc import service_pb2_grpc as kserve_grpc

from compressors import registry as technique_registry
from pareto.v1 import (
    datasets_pb2,
    datasets_pb2_grpc,
    deployments_pb2,
    deployments_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    variants_pb2,
    variants_pb2_grpc,
)
from runtimes import helper_process
from runtimes import registry as runtime_registry
from service.api import runtimes as runtime_service
from service.api.admission import InflightLimiter
from service.api.call_pools import CallPools, call_kinds
from service.api.datasets import DatasetServicer
from service.api.deployments import DeploymentServicer
from service.api.error_interceptor import ErrorInterceptor
from service.api.inference import InferenceServicer
from service.api.jobs import JobServicer
from service.api.models import ModelServicer
from service.api.variants import VariantServicer
from service.auth import Guard, auth_interceptor, guard, tls
from service.catalog.datasets import DatasetUploader
from service.catalog.models import ModelCatalog
from service.catalog.uploads import Uploader, recover_store
from service.deployments.canary import CanaryController
from service.deployments.manager import DeploymentManager
from service.deployments.shadow import ShadowQueue
from service.deployments.sync import DeploymentSync
from service.jobs.scheduler import JobScheduler
from service.rest.api import RestApi
from service.rest.server import RestApp, RestOptions, RestServer
from service.serving.admission import InflightLimit
from service.serving.configs import ServingConfigs
from service.serving.dataplane import DataPlane
from service.serving.executor import Executor
from service.serving.prepare import RuntimePreparer
from service.serving.servables import ServableResolver
from service.serving.sessions import SessionManager
from service.settings import Settings
from service.store.blobs import BlobStore
from service.store.datadir import DataDirLock
from service.store.open import lock_dir, open_repository, orphan_grace_s

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    models_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
    datasets_pb2.DESCRIPTOR.services_by_name["DatasetService"].full_name,
    jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
    variants_pb2.DESCRIPTOR.services_by_name["VariantService"].full_name,
    deployments_pb2.DESCRIPTOR.services_by_name["DeploymentService"].full_name,
    runtime_service.SERVICE_NAME,
    kserve_pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
    health.SERVICE_NAME,
    reflection.SERVICE_NAME,
)


def package_version() -> str:
    try:
        return version("pareto-gateway")
    except PackageNotFoundError:
        return "0+unknown"


class GatewayServer:
    """The whole process: store, sessions, gRPC servicers, health, reflection, metrics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = 0
        self.metrics_port = 0
        self.health_port = 0
        self.http_port = 0  # the REST port; 0 while off
        self._rest: RestServer | None = None
        self._ready = threading.Event()
        self._lock = DataDirLock(lock_dir(settings))
        self._health = health.HealthServicer()

    def start(self) -> None:
        """Check the settings, open the store, build serving and jobs, then open the ports
        and say SERVING (in that order: a bad setting or file stops us before any port)."""
        s = self.settings
        if s.ray_address:  # Ray needs PostgreSQL: refused before anything starts
            from service.jobs.ray_launcher import check_settings

            check_settings(s)
        credentials = tls.server_credentials(s)  # bad TLS or token files stop us first
        self._build_call_limits()
        self._lock.acquire()
        technique_registry.add_modules(s.technique_modules())
        helper_process.configure(s.helper_memory_bytes, s.max_helper_processes)
        for runtime in runtime_registry.list_runtimes():
            runtime.set_memory_limit(s.inference_memory_bytes)
        self._open_store()
        self._build_serving()
        self.scheduler = JobScheduler(self.repo, s)
        self._start_servers(credentials)

    def _build_call_limits(self) -> None:
        s = self.settings
        self._guard = guard(s)
        self._auth = auth_interceptor(self._guard)
        self._limit = InflightLimit(s.max_inflight_requests)  # gRPC and REST count here
        self._limiter = InflightLimiter(self._limit)
        self._pools = CallPools(
            call_kinds(
                s.grpc_workers,
                s.grpc_management_workers,
                s.grpc_streams_per_kind,
                s.grpc_stream_idle_timeout_s,
            )
        )

    def _open_store(self) -> None:
        s = self.settings
        self.blobs = BlobStore(s.data_dir, orphan_grace_s=orphan_grace_s(s))
        self.repo = open_repository(s)
        orphans = recover_store(self.blobs, self.repo)
        if orphans:
            log.warning(
                "removed %d blob(s) no record refers to (interrupted uploads)", len(orphans)
            )

    def _build_serving(self) -> None:
        """Sessions, the one inference path, deployments (restored) and their controllers."""
        s = self.settings
        self.preparer = RuntimePreparer(self.blobs.root, s.runtime_defaults(), self._dataset_path)
        self.configs = ServingConfigs(self.repo, s.resolve_cache_s)
        self.sessions = SessionManager(
            ServableResolver(self.repo, s.resolve_cache_s),
            self.blobs,
            self.preparer,
            s.load_on_demand,
            s.measure_memory,
            self.configs.get,
        )
        self.configs.changed = self.sessions.reconfigure
        executor = Executor(self.sessions, s.max_request_bytes)
        self.deployments = DeploymentManager(
            self.repo,
            self.sessions,
            ShadowQueue(executor, s.shadow_queue_size, s.shadow_workers),
            s.route_stats_window,
        )
        self.dataplane = DataPlane(executor, self.deployments)
        self.deployments.restore()
        self.canary = CanaryController(self.deployments, s.canary_interval_s)
        self.deployment_sync = DeploymentSync(self.deployments, s.deployment_sync_s)
        self._inference = InferenceServicer(self.dataplane, package_version(), self._ready.is_set)

    def _start_servers(self, credentials: grpc.ServerCredentials | None) -> None:
        """The gRPC, REST, health and metrics ports, the background loops, then SERVING."""
        s = self.settings
        self._grpc = self._build_grpc_server()
        self.port = _bind(self._grpc, f"{_host(s.host)}:{s.port}", credentials)
        self._rest = self._build_rest_server(self._guard)
        self._grpc.start()
        if self._rest is not None:
            self._rest.start()
        self._health_grpc = self._start_health_server()
        self.scheduler.start()
        self.canary.start()
        if self.repo.shared:  # other replicas change deployments too
            self.deployment_sync.start()
        self._metrics_http, _ = start_http_server(s.metrics_port, addr=s.host)
        self.metrics_port = self._metrics_http.server_port
        self._ready.set()
        for name in ("", *SERVICE_NAMES):
            self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "pareto serving gRPC on %s:%d, REST on %s, metrics on :%d",
            s.host,
            self.port,
            f":{self.http_port}" if self._rest is not None else "(off)",
            self.metrics_port,
        )

    def _build_grpc_server(self) -> grpc.Server:
        s = self.settings
        hidden = {str(self.blobs.root.resolve()): "<data dir>"}
        interceptors = (self._pools, self._auth, self._limiter, ErrorInterceptor(hidden))
        server = grpc.server(
            self._pools.default_pool,
            interceptors=[i for i in interceptors if i is not None],
            options=[
                ("grpc.max_receive_message_length", s.grpc_max_message_bytes),
                ("grpc.max_send_message_length", s.grpc_max_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        deployments_pb2_grpc.add_DeploymentServiceServicer_to_server(
            DeploymentServicer(self.deployments), server
        )
        limits = {
            "max_model_bytes": s.max_model_bytes,
            "max_expansion_ratio": s.max_expansion_ratio,
            "max_tensor_elements": s.max_tensor_elements,
        }
        uploader = Uploader(self.blobs, self.repo, **limits)
        models_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelServicer(
                uploader,
                self.repo,
                ModelCatalog(self.repo, self.blobs, self.sessions),
                self.configs,
            ),
            server,
        )
        datasets_pb2_grpc.add_DatasetServiceServicer_to_server(
            DatasetServicer(
                self.repo, self.blobs, DatasetUploader(self.blobs, self.repo, **limits)
            ),
            server,
        )
        jobs_pb2_grpc.add_JobServiceServicer_to_server(
            JobServicer(self.repo, self.scheduler), server
        )
        variants_pb2_grpc.add_VariantServiceServicer_to_server(
            VariantServicer(self.repo, self.blobs, self.sessions), server
        )
        kserve_grpc.add_GRPCInferenceServiceServicer_to_server(self._inference, server)
        runtime_service.add_to_server(
            runtime_service.RuntimeServicer(self.sessions.resolver, self.blobs), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(SERVICE_NAMES, server)
        return server

    def _build_rest_server(self, checks: Guard | None) -> RestServer | None:
        """PARETO_HTTP_PORT: KServe v2 REST over the same servicer semantics, data plane,
        tokens, TLS settings and in-flight limit (-1 = off)."""
        s = self.settings
        if s.http_port < 0:
            return None
        options = RestOptions(
            host=s.host,
            port=s.http_port,
            workers=s.http_workers,
            max_body_bytes=s.http_max_body_bytes,
            idle_timeout_s=s.grpc_stream_idle_timeout_s,
            ssl_context=tls.server_ssl_context(s),
            hidden={str(self.blobs.root.resolve()): "<data dir>"},
        )
        api = RestApi(self._inference, self.dataplane, self._ready.is_set)
        server = RestServer(RestApp(api, checks, self._limit, options), options)
        self.http_port = server.port
        return server

    def _start_health_server(self) -> grpc.Server | None:
        """PARETO_HEALTH_PORT: the same health statuses on a plaintext port of their own.

        The kubelet's native gRPC probes (and most load-balancer checks) cannot speak TLS,
        so with TLS or mTLS on the main port they need this one. It carries nothing but
        grpc.health.v1 (SERVING / NOT_SERVING per service name), so it needs no auth.
        """
        s = self.settings
        if s.health_port < 0:
            return None
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="health"))
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        self.health_port = server.add_insecure_port(f"{_host(s.host)}:{s.health_port}")
        server.start()
        return server

    def _dataset_path(self, name: str) -> Path:
        """The stored .npz of dataset `name` (NotFound if none): runtimes' calibration."""
        return self.blobs.path(self.repo.get_dataset(name).sha256)

    def stop(self, grace: float = 5.0, delay: float = 0.0) -> None:
        """Turn NOT_SERVING (health, readiness) but go on serving for `delay` seconds, so
        that load balancers and clients stop sending; then stop taking calls, let those in
        flight (batched ones waiting in a queue too) finish within `grace`, and release
        everything."""
        self._ready.clear()
        self._health.enter_graceful_shutdown()
        if delay > 0:
            time.sleep(delay)
        if self._rest is not None:
            self._rest.begin_stop(grace)  # both ports stop taking requests together
        self._grpc.stop(grace).wait()
        if self._rest is not None:
            self._rest.wait_stopped(grace + 1.0)
        if self._health_grpc is not None:
            self._health_grpc.stop(0)
        self._limiter.close()
        self._pools.close()
        self.scheduler.stop(grace)
        self.canary.stop()
        self.deployment_sync.stop()
        self.deployments.close()
        self._metrics_http.shutdown()
        self._metrics_http.server_close()
        self.sessions.close()
        self.repo.close()
        self._lock.release()
        log.info("pareto stopped")

    def wait(self) -> None:
        self._grpc.wait_for_termination()


def _bind(server: grpc.Server, address: str, credentials: grpc.ServerCredentials | None) -> int:
    """Listen on `address`: TLS (or mTLS) with `credentials`, plaintext without."""
    if credentials is None:
        return server.add_insecure_port(address)
    return server.add_secure_port(address, credentials)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
