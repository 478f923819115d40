"""`pareto.v1.ModelService`: upload, list, get, delete models."""

from __future__ import annotations

from collections.abc import Iterator

from pareto.v1 import models_pb2, models_pb2_grpc
from pareto_core import names
from pareto_core.errors import InvalidArgument
from service import metrics
from service.api.convert import (
    header_to_request,
    model_to_proto,
    serving_config_from_proto,
    serving_config_to_proto,
)
from service.catalog.models import ModelCatalog
from service.catalog.uploads import Uploader
from service.serving import config as serving_config
from service.serving.configs import ServingConfigs
from service.store.interfaces import ModelRepository
from service.store.records import ModelRecord


class ModelServicer(models_pb2_grpc.ModelServiceServicer):
    def __init__(
        self,
        uploader: Uploader,
        repo: ModelRepository,
        catalog: ModelCatalog,
        configs: ServingConfigs,
    ) -> None:
        self._uploader = uploader
        self._repo = repo
        self._catalog = catalog
        self._configs = configs

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

    def SetServingConfig(self, request: models_pb2.SetServingConfigRequest, context):
        name = names.model_name(request.name)
        config = serving_config.parse(serving_config_from_proto(request.config))
        return serving_config_to_proto(self._configs.put(name, config))

    def GetServingConfig(self, request: models_pb2.GetServingConfigRequest, context):
        name = names.model_name(request.name)
        self._repo.get_model(name)  # NotFound for unknown names
        return serving_config_to_proto(self._configs.get(name))

    def DeleteModel(self, request: models_pb2.DeleteModelRequest, context):
        deleted = self._catalog.delete(names.model_name(request.name), request.version)
        return models_pb2.DeleteModelResponse(deleted=[model_to_proto(r) for r in deleted])
