"""KServe v2 `inference.GRPCInferenceService`, on tritonclient's own generated stubs.

An unmodified `tritonclient.grpc.InferenceServerClient` works against it: live, ready,
metadata, infer (unary and streaming) and the model-repository extension.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from pareto_core import names
from pareto_core.errors import ParetoError
from runtimes import registry
from service.api import kserve_codec
from service.deployments.router import ROUTE_KEY
from service.serving.dataplane import DataPlane
from service.serving.targets import Target

SERVER_NAME = "pareto"
EXTENSIONS = ("model_repository",)
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
            inputs=[kserve_codec.tensor_metadata(t) for t in servable.signature.inputs],
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
        result = self._dataplane.infer(name, version, decode, route_key(request, context))
        return kserve_codec.encode_response(
            request.model_name,
            result.servable.version,
            request.id,
            result.outputs,
            {"pareto_runtime": result.runtime, "pareto_variant": result.servable.variant_label},
        )

    def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context):
        sessions = self._dataplane.sessions
        index = []
        for servable in sessions.resolver.all():
            ready = sessions.is_ready(Target(servable))
            if request.ready and not ready:
                continue
            index.append(
                pb.RepositoryIndexResponse.ModelIndex(
                    name=servable.model,
                    version=servable.version,
                    state="READY" if ready else "UNAVAILABLE",
                    reason="" if ready else "not loaded",
                )
            )
        return pb.RepositoryIndexResponse(models=index)

    def RepositoryModelLoad(self, request: pb.RepositoryModelLoadRequest, context):
        self._dataplane.load(names.serving_name(request.model_name))
        return pb.RepositoryModelLoadResponse()

    def RepositoryModelUnload(self, request: pb.RepositoryModelUnloadRequest, context):
        self._dataplane.unload(names.serving_name(request.model_name))
        return pb.RepositoryModelUnloadResponse()


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
