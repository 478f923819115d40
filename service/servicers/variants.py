"""`pareto.v1.VariantService` (being written: UNIMPLEMENTED until then)."""

from __future__ import annotations

from pareto.v1 import variants_pb2_grpc
from service.sessions import SessionManager
from service.store.blobs import BlobStore
from service.store.sqlite_repository import SqliteRepository


class VariantServicer(variants_pb2_grpc.VariantServiceServicer):
    def __init__(self, repo: SqliteRepository, blobs: BlobStore, sessions: SessionManager) -> None:
        self._repo = repo
        self._blobs = blobs
        self._sessions = sessions
