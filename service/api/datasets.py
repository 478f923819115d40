"""`pareto.v1.DatasetService`: upload, list, get and delete datasets (thin adapter)."""

from __future__ import annotations

from collections.abc import Iterator

from pareto.v1 import datasets_pb2, datasets_pb2_grpc
from pareto_core import names
from pareto_core.errors import InvalidArgument
from service.api.convert import dataset_to_proto
from service.catalog.datasets import DatasetUploader, DatasetUploadRequest, delete_dataset
from service.store.blobs import BlobStore
from service.store.interfaces import Repository
from service.store.records import DatasetRecord


class DatasetServicer(datasets_pb2_grpc.DatasetServiceServicer):
    def __init__(self, repo: Repository, blobs: BlobStore, uploader: DatasetUploader) -> None:
        self._repo = repo
        self._blobs = blobs
        self._uploader = uploader

    def UploadDataset(
        self, request_iterator: Iterator[datasets_pb2.UploadDatasetRequest], context
    ) -> datasets_pb2.Dataset:
        return dataset_to_proto(self._upload(request_iterator))

    def _upload(self, messages: Iterator[datasets_pb2.UploadDatasetRequest]) -> DatasetRecord:
        first = next(messages, None)
        if first is None or not first.HasField("header"):
            raise InvalidArgument("the first UploadDatasetRequest must carry `header`")
        header = first.header
        request = DatasetUploadRequest(
            header.name, header.size_bytes, header.sha256, header.description
        )
        with self._uploader.begin(request) as upload:
            for message in messages:
                if message.HasField("header"):
                    raise InvalidArgument("`header` may only be sent in the first message")
                upload.write(message.chunk)
            return upload.finish()

    def ListDatasets(self, request: datasets_pb2.ListDatasetsRequest, context):
        records = self._repo.list_datasets()
        return datasets_pb2.ListDatasetsResponse(datasets=[dataset_to_proto(r) for r in records])

    def GetDataset(self, request: datasets_pb2.GetDatasetRequest, context) -> datasets_pb2.Dataset:
        return dataset_to_proto(self._repo.get_dataset(names.dataset_name(request.name)))

    def DeleteDataset(self, request: datasets_pb2.DeleteDatasetRequest, context):
        name = names.dataset_name(request.name)
        return dataset_to_proto(delete_dataset(self._blobs, self._repo, name))
