"""`pareto.v1.DatasetService` (being written: UNIMPLEMENTED until then)."""

from __future__ import annotations

from pareto.v1 import datasets_pb2_grpc
from service.store.blobs import BlobStore
from service.store.sqlite_repository import SqliteRepository


class DatasetServicer(datasets_pb2_grpc.DatasetServiceServicer):
    def __init__(self, repo: SqliteRepository, blobs: BlobStore) -> None:
        self._repo = repo
        self._blobs = blobs
