"""pareto.v1 RuntimeService: what this host can run on, and Triton repository exports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pareto.v1 import runtimes_pb2 as pb
from pareto.v1 import runtimes_pb2_grpc as pb_grpc
from pareto_core.formats import FORMAT_ONNX_BUNDLE
from runtimes import registry
from runtimes.base import Runtime
from runtimes.triton_config import ExportSettings, build_config, config_text, ensure_onnx
from service.serving.servables import Servable, ServableResolver
from service.store.blobs import BlobStore
from service.store.bundles import find_onnx

CHUNK_BYTES = 1 << 20


def runtime_to_proto(runtime: Runtime) -> pb.Runtime:
    missing = runtime.available()
    caps = runtime.capabilities()
    message = pb.Runtime(
        name=runtime.name,
        available=missing is None,
        unavailable_reason=missing or "",
        formats=list(caps.formats),
        datatypes=list(caps.datatypes),
        devices=list(caps.devices),
        auto_select=runtime.auto_select,
        builds_artifacts=runtime.needs_build(),
    )
    if missing is None:
        described = runtime.describe()
        message.version = described.version
        message.device = described.device
        message.accelerated = described.accelerated
        message.details.update(described.details)
    return message


def export_settings(request: pb.ExportTritonRequest) -> ExportSettings:
    defaults = ExportSettings()
    return ExportSettings(
        max_batch_size=request.max_batch_size,
        preferred_batch_sizes=tuple(request.preferred_batch_sizes),
        max_queue_delay_us=request.max_queue_delay_us or defaults.max_queue_delay_us,
        instance_count=request.instance_count or defaults.instance_count,
        kind=request.kind or defaults.kind,
        tensorrt=not request.disable_tensorrt,
        tensorrt_precision=request.tensorrt_precision or defaults.tensorrt_precision,
    )


def repository_files(servable: Servable, blobs: BlobStore) -> list[tuple[str, Path]]:
    """(path in the version directory, stored file) for the model's files."""
    if servable.format != FORMAT_ONNX_BUNDLE:
        return [("model.onnx", blobs.path(servable.sha256))]
    onnx_file = find_onnx(blobs.unpacked_dir(servable.sha256))
    files = [("model.onnx", onnx_file)]
    for path in sorted(onnx_file.parent.rglob("*")):
        if path.is_file() and path != onnx_file:
            files.append((str(path.relative_to(onnx_file.parent)), path))
    return files


class RuntimeServicer(pb_grpc.RuntimeServiceServicer):
    def __init__(self, resolver: ServableResolver, blobs: BlobStore) -> None:
        self._resolver = resolver
        self._blobs = blobs

    def ListRuntimes(self, request: pb.ListRuntimesRequest, context) -> pb.ListRuntimesResponse:
        return pb.ListRuntimesResponse(
            runtimes=[runtime_to_proto(r) for r in registry.list_runtimes()]
        )

    def ExportTriton(
        self, request: pb.ExportTritonRequest, context
    ) -> Iterator[pb.ExportFileChunk]:
        servable = self._resolver.resolve(request.name, request.version)
        ensure_onnx(servable.format)
        name = f"{servable.model}.{servable.version}" if servable.is_variant else servable.model
        config = build_config(name, servable.signature, export_settings(request))
        files = repository_files(servable, self._blobs)  # NotFound before anything is sent
        yield pb.ExportFileChunk(
            path=f"{name}/config.pbtxt", data=config_text(config).encode(), last=True
        )
        for relative, source in files:
            yield from _chunks(f"{name}/1/{relative}", source)


def _chunks(path: str, source: Path) -> Iterator[pb.ExportFileChunk]:
    with open(source, "rb") as f:
        data = f.read(CHUNK_BYTES)
        while True:
            following = f.read(CHUNK_BYTES)
            yield pb.ExportFileChunk(path=path, data=data, last=not following)
            if not following:
                return
            data = following


SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RuntimeService"].full_name


def add_to_server(servicer: RuntimeServicer, server) -> None:
    pb_grpc.add_RuntimeServiceServicer_to_server(servicer, server)
