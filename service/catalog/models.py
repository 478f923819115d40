"""Model lifecycle operations that span the repository, the blob store and the sessions."""

from __future__ import annotations

from pareto_core.errors import FailedPrecondition
from service.catalog.uploads import delete_model
from service.serving.sessions import SessionManager
from service.store.blobs import BlobStore
from service.store.deployment_records import deployments_using
from service.store.interfaces import Repository
from service.store.records import JOB_FINAL_STATES, ModelRecord

LISTED = 5  # dependents named in an error message


class ModelCatalog:
    def __init__(self, repo: Repository, blobs: BlobStore, sessions: SessionManager) -> None:
        self._repo = repo
        self._blobs = blobs
        self._sessions = sessions

    def delete(self, name: str, version: int = 0) -> list[ModelRecord]:
        """Delete one version (or all when 0). Refused while a deployment targets it, it is
        loaded for serving, has variants (they would lose their parent: delete them first)
        or has a job queued or running.

        The row goes first, then any blob no remaining record refers to: a crash in between
        leaves an orphan blob, which start-up garbage collection removes.
        """
        self._repo.get_model(name, version)  # NotFound before anything else
        self._refuse_if_depended_on(name, version)
        if self._sessions.is_loaded(name, version):
            raise FailedPrecondition(
                f"model {name!r}{f' version {version}' if version else ''} is loaded for "
                "serving; unload it first (RepositoryModelUnload / tritonclient unload_model)"
            )
        return delete_model(self._blobs, self._repo, name, version)

    def _refuse_if_depended_on(self, name: str, version: int) -> None:
        what = f"model {name!r}{f' version {version}' if version else ''}"
        deployed = deployments_using(self._repo.list_deployments(), name, str(version or ""))
        if deployed:
            raise FailedPrecondition(
                f"{what} is a target of deployment(s) {_some(deployed)}; delete them first"
            )
        variants = [
            v.id for v in self._repo.list_variants(name) if version in (0, v.parent_version)
        ]
        if variants:
            raise FailedPrecondition(
                f"{what} has {len(variants)} variant(s) ({_some(variants)}); delete them first "
                "(DeleteVariant / `pareto variants`)"
            )
        jobs = [
            j.id
            for j in self._repo.list_jobs(name)
            if j.state not in JOB_FINAL_STATES and version in (0, j.model_version)
        ]
        if jobs:
            raise FailedPrecondition(
                f"{what} has {len(jobs)} job(s) queued or running ({_some(jobs)}); cancel them "
                "or wait for them to end"
            )


def _some(ids: list[str]) -> str:
    more = f" and {len(ids) - LISTED} more" if len(ids) > LISTED else ""
    return ", ".join(ids[:LISTED]) + more
