"""KServe v2 `inference.GRPCInferenceService`, on tritonclient's own generated stubs.

An unmodified `tritonclient.grpc.InferenceServerClient` works against it: live, ready,
metadata, infer (unary and streaming) and the model-repository extension.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from pareto_core import names
from pareto_core.errors import ParetoError
from runtimes import registry
from service.api import kserve_codec, triton_views
from service.deployments.router import ROUTE_KEY
from service.serving.dataplane import DataPlane
from service.serving.statistics import ModelStats
from service.serving.targets import Target

SERVER_NAME = "pareto"
EXTENSIONS = ("model_repository", "model_configuration", "statistics")
# A gRPC deadline further away than this is no deadline (grpc reports "none" as far future).
_NO_DEADLINE_S = 10 * 365 * 24 * 3600
_NV = ("name", "version")  # field names for names.serving
_MV = ("model_name", "model_version")


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, dataplane: DataPlane, version: str, is_ready: Callable[[], bool]) -> None:
        self._dataplane = dataplane
        self._version = version
        self._is_ready = is_ready

    def ServerLive(self, request: pb.ServerLiveRequest, context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request: pb.ServerReadyRequest, context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._is_ready())

    def ServerMetadata(self, request, context) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(
            name=SERVER_NAME, version=self._version, extensions=list(EXTENSIONS)
        )

    def ModelReady(self, request: pb.ModelReadyRequest, context) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(
            ready=self._dataplane.model_ready(*names.serving(request.name, request.version, _NV))
        )

    def ModelMetadata(self, request: pb.ModelMetadataRequest, context):
        name, version = names.serving(request.name, request.version, _NV)
        servable = self._dataplane.model(name, version)
        return pb.ModelMetadataResponse(
            name=request.name,
            versions=[servable.version],
            platform=platform(self._dataplane.model_runtime(name, version) or servable.format),
            inputs=[kserve_codec.tensor_metadata(t) for t in servable.signature.served_inputs],
            outputs=[kserve_codec.tensor_metadata(t) for t in servable.signature.outputs],
        )

    def ModelInfer(self, request: pb.ModelInferRequest, context) -> pb.ModelInferResponse:
        return self._infer(request, context)

    def ModelStreamInfer(
        self, request_iterator: Iterator[pb.ModelInferRequest], context
    ) -> Iterator[pb.ModelStreamInferResponse]:
        # Triton semantics: a failed request reports its error in the stream, which goes on.
        for request in request_iterator:
            try:
                yield pb.ModelStreamInferResponse(infer_response=self._infer(request, context))
            except ParetoError as exc:
                yield pb.ModelStreamInferResponse(error_message=f"{exc.code}: {exc}")

    def _infer(self, request: pb.ModelInferRequest, context=None) -> pb.ModelInferResponse:
        def decode(signature):
            return (
                kserve_codec.decode_inputs(request, signature),
                kserve_codec.requested_outputs(request, signature),
            )

        name, version = names.serving(request.model_name, request.model_version, _MV)
        key = route_key(request, context)
        result = self._dataplane.infer(name, version, decode, key, deadline_of(context))
        return kserve_codec.encode_response(
            request.model_name,
            result.servable.version,
            request.id,
            result.outputs,
            {"pareto_runtime": result.runtime, "pareto_variant": result.servable.variant_label},
        )

    def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context):
        """Every model version and variant: READY when a request would be served now
        (loaded, or loading on its first request), else UNAVAILABLE with the reason."""
        sessions = self._dataplane.sessions
        index = []
        for servable in sessions.resolver.all():
            target = Target(servable)
            ready, reason = sessions.readiness(target)
            if request.ready and not ready:
                continue
            if ready and not sessions.is_ready(target):
                reason = "loads on its first request"
            index.append(
                pb.RepositoryIndexResponse.ModelIndex(
                    name=servable.model,
                    version=servable.version,
                    state="READY" if ready else "UNAVAILABLE",
                    reason=reason,
                )
            )
        return pb.RepositoryIndexResponse(models=index)

    def ModelConfig(self, request: pb.ModelConfigRequest, context) -> pb.ModelConfigResponse:
        name, version = names.serving(request.name, request.version, _NV)
        servable = self._dataplane.model(name, version)
        runtime = self._dataplane.model_runtime(name, version)
        serving = self._dataplane.sessions.config_of(servable.model)
        config = triton_views.model_config(request.name, servable, runtime, serving)
        return pb.ModelConfigResponse(config=config)

    def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context
    ) -> pb.ModelStatisticsResponse:
        """Counts and cumulative times per model version (all of them without a name)."""
        stats = self._dataplane.sessions.statistics.snapshot()
        keys = set(stats)
        if request.name:
            name, version = names.serving(request.name, request.version, _NV)
            servable = self._dataplane.model(name, version)  # NotFound for unknown names
            keys = {servable.key}  # zero counts until it runs
            if not version and not servable.is_variant:  # a name alone: every version
                keys |= {key for key in stats if key[0] == servable.model}
        models = [
            triton_views.model_statistics(model, version, stats.get((model, version), ModelStats()))
            for model, version in sorted(keys)
        ]
        return pb.ModelStatisticsResponse(model_stats=models)

    def RepositoryModelLoad(self, request: pb.RepositoryModelLoadRequest, context):
        self._dataplane.load(names.serving_name(request.model_name))
        return pb.RepositoryModelLoadResponse()

    def RepositoryModelUnload(self, request: pb.RepositoryModelUnloadRequest, context):
        self._dataplane.unload(names.serving_name(request.model_name))
        return pb.RepositoryModelUnloadResponse()


def deadline_of(context) -> float | None:
    """The call's deadline on time.monotonic's clock; None when the client set none."""
    remaining = context.time_remaining() if context is not None else None
    if remaining is None or remaining > _NO_DEADLINE_S:
        return None
    return time.monotonic() + remaining


def route_key(request: pb.ModelInferRequest, context) -> str:
    """The sticky-routing key: request parameter `pareto-route-key`, else gRPC metadata."""
    if ROUTE_KEY in request.parameters:
        return request.parameters[ROUTE_KEY].string_param
    for key, value in context.invocation_metadata() if context is not None else ():
        if key == ROUTE_KEY:
            return value if isinstance(value, str) else value.decode()
    return ""


def platform(runtime: str) -> str:
    """The Triton-style platform string: the runtime's name, with `:<device>` appended when
    the runtime runs without its accelerator (`edgetpu_tflite:cpu-fallback`). KServe v2's
    ModelMetadataResponse has no parameters, so the platform is where a client sees it."""
    try:
        device = registry.get_runtime(runtime).describe().device
    except Exception:  # not a runtime (a format), or one that cannot describe itself here
        return runtime
    return f"{runtime}:{device}" if device.endswith("fallback") else runtime
