"""Model lifecycle operations that span the repository, the blob store and the sessions."""

from __future__ import annotations

from service.errors import FailedPrecondition
from service.sessions import SessionManager
from service.store.blobs import BlobStore
from service.store.repository import ModelRecord, ModelRepository
from service.uploads import delete_model


class ModelCatalog:
    def __init__(self, repo: ModelRepository, blobs: BlobStore, sessions: SessionManager) -> None:
        self._repo = repo
        self._blobs = blobs
        self._sessions = sessions

    def delete(self, name: str, version: int = 0) -> list[ModelRecord]:
        """Delete one version (or all when 0). Refused while a version is loaded for serving.

        The row goes first, then any blob no remaining record refers to: a crash in between
        leaves an orphan blob, which start-up garbage collection removes.
        """
        self._repo.get_model(name, version)  # NotFound before anything else
        if self._sessions.is_loaded(name, version):
            raise FailedPrecondition(
                f"model {name!r}{f' version {version}' if version else ''} is loaded for "
                "serving; unload it first (RepositoryModelUnload / tritonclient unload_model)"
            )
        return delete_model(self._blobs, self._repo, name, version)
