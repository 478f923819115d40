"""Model lifecycle operations that span the repository, the blob store and the sessions."""

from __future__ import annotations

from pareto_core.errors import FailedPrecondition
from service.catalog.uploads import delete_model
from service.serving.sessions import SessionManager
from service.store.blobs import BlobStore
from service.store.interfaces import Repository
from service.store.records import ModelRecord


class ModelCatalog:
    def __init__(self, repo: Repository, blobs: BlobStore, sessions: SessionManager) -> None:
        self._repo = repo
        self._blobs = blobs
        self._sessions = sessions

    def delete(self, name: str, version: int = 0) -> list[ModelRecord]:
        """Delete one version (or all when 0). Refused while a deployment targets it, it has
        variants (they would lose their parent: delete them first) or a job queued or
        running (checked by the store in the deleting transaction, so a deployment or job
        created at the same moment cannot slip in), or while it is loaded for serving.

        The row goes first, then any blob no remaining record refers to: a crash in between
        leaves an orphan blob, which start-up garbage collection removes. A session that an
        inference loaded while the delete ran is closed after it.
        """

        def refuse_if_loaded() -> None:
            if self._sessions.is_loaded(name, version):
                raise FailedPrecondition(
                    f"model {name!r}{f' version {version}' if version else ''} is loaded for "
                    "serving; unload it first (RepositoryModelUnload / tritonclient unload_model)"
                )

        deleted = delete_model(self._blobs, self._repo, name, version, refuse_if_loaded)
        self._sessions.unload(name, str(version or ""))
        return deleted
