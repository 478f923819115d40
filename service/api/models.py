"""`pareto.v1.ModelService`: upload, list, get, delete models."""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf.timestamp_pb2 import Timestamp

from pareto.v1 import common_pb2, models_pb2, models_pb2_grpc
from pareto_core import names
from pareto_core.errors import InvalidArgument
from pareto_core.tensors import TensorSpec
from service import metrics
from service.catalog.models import ModelCatalog
from service.catalog.uploads import Uploader, UploadRequest
from service.store.interfaces import ModelRepository
from service.store.records import ModelRecord

_FORMAT_TO_PROTO = {
    "onnx": common_pb2.MODEL_FORMAT_ONNX,
    "onnx_bundle": common_pb2.MODEL_FORMAT_ONNX_BUNDLE,
    "torch_export": common_pb2.MODEL_FORMAT_TORCH_EXPORT,
}
_PROTO_TO_FORMAT = {v: k for k, v in _FORMAT_TO_PROTO.items()}


class ModelServicer(models_pb2_grpc.ModelServiceServicer):
    def __init__(self, uploader: Uploader, repo: ModelRepository, catalog: ModelCatalog) -> None:
        self._uploader = uploader
        self._repo = repo
        self._catalog = catalog

    def UploadModel(
        self, request_iterator: Iterator[models_pb2.UploadModelRequest], context
    ) -> models_pb2.UploadModelResponse:
        with metrics.count_outcome(lambda code: metrics.UPLOADS.labels(code).inc()):
            record = self._upload(request_iterator)
        return models_pb2.UploadModelResponse(model=model_to_proto(record))

    def _upload(self, messages: Iterator[models_pb2.UploadModelRequest]) -> ModelRecord:
        first = next(messages, None)
        if first is None or not first.HasField("header"):
            raise InvalidArgument("the first UploadModelRequest must carry `header`")
        with self._uploader.begin(header_to_request(first.header)) as upload:
            for message in messages:
                if message.HasField("header"):
                    raise InvalidArgument("`header` may only be sent in the first message")
                upload.write(message.chunk)
                metrics.UPLOAD_BYTES.inc(len(message.chunk))
            return upload.finish()

    def ListModels(self, request: models_pb2.ListModelsRequest, context):
        records = self._repo.list_models(dict(request.label_selector))
        return models_pb2.ListModelsResponse(models=[model_to_proto(r) for r in records])

    def GetModel(self, request: models_pb2.GetModelRequest, context) -> models_pb2.Model:
        name = names.model_name(request.name)
        return model_to_proto(self._repo.get_model(name, request.version))

    def DeleteModel(self, request: models_pb2.DeleteModelRequest, context):
        deleted = self._catalog.delete(names.model_name(request.name), request.version)
        return models_pb2.DeleteModelResponse(deleted=[model_to_proto(r) for r in deleted])


def header_to_request(header: models_pb2.UploadHeader) -> UploadRequest:
    if header.format not in _PROTO_TO_FORMAT:
        known = ", ".join(common_pb2.ModelFormat.Name(v) for v in _PROTO_TO_FORMAT)
        raise InvalidArgument(f"header.format must be one of {known}, got {header.format}")
    return UploadRequest(
        name=header.name,
        format=_PROTO_TO_FORMAT[header.format],
        size_bytes=header.size_bytes,
        sha256=header.sha256,
        description=header.description,
        labels=dict(header.labels),
        new_version=header.new_version,
    )


def tensor_to_proto(spec: TensorSpec) -> common_pb2.TensorSpec:
    return common_pb2.TensorSpec(name=spec.name, datatype=spec.datatype, shape=list(spec.shape))


def model_to_proto(record: ModelRecord) -> models_pb2.Model:
    created = Timestamp()
    if record.created_at is not None:
        created.FromDatetime(record.created_at)
    return models_pb2.Model(
        name=record.name,
        version=record.version,
        format=_FORMAT_TO_PROTO[record.format],
        sha256=record.sha256,
        size_bytes=record.size_bytes,
        description=record.description,
        labels=record.labels,
        inputs=[tensor_to_proto(t) for t in record.signature.inputs],
        outputs=[tensor_to_proto(t) for t in record.signature.outputs],
        created_at=created,
    )
