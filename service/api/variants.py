"""`pareto.v1.VariantService`: list, get and delete variants (thin adapter)."""

from __future__ import annotations

from pareto.v1 import variants_pb2, variants_pb2_grpc
from pareto_core import names
from pareto_core.errors import InvalidArgument
from service.api.convert import variant_to_proto
from service.catalog.variants import delete_variant, list_variants
from service.serving.sessions import SessionManager
from service.store.blobs import BlobStore
from service.store.interfaces import Repository


class VariantServicer(variants_pb2_grpc.VariantServiceServicer):
    def __init__(self, repo: Repository, blobs: BlobStore, sessions: SessionManager) -> None:
        self._repo = repo
        self._blobs = blobs
        self._sessions = sessions

    def ListVariants(self, request: variants_pb2.ListVariantsRequest, context):
        records = list_variants(
            self._repo, names.check_optional(names.MODEL_NAME, request.model, "model")
        )
        return variants_pb2.ListVariantsResponse(variants=[variant_to_proto(r) for r in records])

    def GetVariant(self, request: variants_pb2.GetVariantRequest, context) -> variants_pb2.Variant:
        return variant_to_proto(self._repo.get_variant(_required_id(request.id)))

    def DeleteVariant(self, request: variants_pb2.DeleteVariantRequest, context):
        variant_id = _required_id(request.id)
        return variant_to_proto(delete_variant(self._repo, self._blobs, self._sessions, variant_id))


def _required_id(variant_id: str) -> str:
    if not variant_id:
        raise InvalidArgument("id is required (a variant id such as var-1a2b3c4d5e)")
    return names.variant_id(variant_id)
