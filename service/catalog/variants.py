"""Variant lifecycle operations spanning the repository, the blob store and the sessions."""

from __future__ import annotations

from pareto_core.errors import FailedPrecondition, NotFound
from service.catalog.uploads import delete_if_unreferenced
from service.serving.sessions import SessionManager
from service.store.blobs import BlobStore
from service.store.interfaces import Repository
from service.store.records import VariantRecord


def list_variants(repo: Repository, model: str = "") -> list[VariantRecord]:
    """Oldest first; every variant when `model` is empty. NotFound for a model that
    neither exists nor has variants left (a deleted model's variants are still listed)."""
    variants = repo.list_variants(model)
    if model and not variants and not repo.name_exists(model):
        raise NotFound(f"model {model!r} not found")
    return variants


def delete_variant(
    repo: Repository, blobs: BlobStore, sessions: SessionManager, variant_id: str
) -> VariantRecord:
    """Delete a variant, refused while a deployment uses it (checked by the store in the
    deleting transaction) or it is loaded. The row goes first, then the blob unless another
    record refers to it (a crash in between leaves an orphan blob, which start-up garbage
    collection removes)."""
    variant = repo.get_variant(variant_id)  # NotFound before anything else

    def refuse_if_loaded() -> None:
        if sessions.is_loaded(variant.serving_name):
            raise FailedPrecondition(
                f"variant {variant_id!r} is loaded for serving as {variant.serving_name!r} "
                f"(model {variant.parent_model!r}, model_version {variant_id!r}); unload it "
                "first (RepositoryModelUnload / tritonclient unload_model)"
            )

    with blobs.lock:
        deleted = repo.delete_variant(variant_id, refuse_if_loaded)
        delete_if_unreferenced(blobs, repo, deleted.sha256)
    sessions.unload(variant.serving_name)
    return deleted
