"""The model upload pipeline, protocol-neutral (the gRPC servicer only adapts to it).

    with uploader.begin(UploadRequest(...)) as upload:   # header checked at once
        for chunk in chunks:
            upload.write(chunk)                          # streamed to tmp/, hashed
        record = upload.finish()                         # verify, inspect, commit

Nothing is visible until `finish` returns: bytes go to a staging file under the blob
store's tmp/, are checked (size, sha256, model validity), the blob is committed (atomic
rename) and only then the metadata row is written. A Hugging Face folder is exported to
ONNX first (`hf_upload`); its record refers to two blobs, the ONNX file and the folder.
Leaving the `with` block without `finish` (an exception, a client disconnect) aborts and
removes the staging file. After a
crash, `recover_store` removes staging leftovers and blobs no record refers to.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, TypeVar

from pareto_core import formats, names
from pareto_core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ParetoError,
    ResourceExhausted,
)
from pareto_core.tensors import Signature
from runtimes import registry
from runtimes.hf.folder import TASKS
from runtimes.model_check import check_model
from service.catalog.hf_upload import HfExport, export_upload
from service.catalog.model_inspect import inspect_model
from service.store.blobs import BlobStore, check_sha256
from service.store.bundles import find_onnx
from service.store.interfaces import ModelRepository
from service.store.records import ModelRecord
from service.store.sql_models import already_exists_message

_LABEL_KEY_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_./-]{0,126}[A-Za-z0-9])?")
MAX_LABELS = 64
MAX_LABEL_VALUE_CHARS = 256
MAX_DESCRIPTION_CHARS = 4096

T = TypeVar("T")


@dataclass(frozen=True)
class UploadRequest:
    name: str
    format: str
    size_bytes: int
    sha256: str
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    new_version: bool = False
    task: str = ""  # hf_folder only: the export's task ("" = from the folder)


def validate_model_name(name: str) -> str:
    return names.model_name(name, "name")


def _validate_labels(labels: dict[str, str]) -> None:
    if len(labels) > MAX_LABELS:
        raise InvalidArgument(f"labels: at most {MAX_LABELS} labels, got {len(labels)}")
    for key, value in labels.items():
        if not isinstance(key, str) or not _LABEL_KEY_RE.fullmatch(key):
            raise InvalidArgument(
                f"label key {str(key)[:200]!r} must be 1-128 characters of letters, digits "
                "and '_.-/', starting and ending with a letter or digit"
            )
        if not isinstance(value, str) or len(value) > MAX_LABEL_VALUE_CHARS:
            raise InvalidArgument(
                f"label {key!r}: value must be a string of at most {MAX_LABEL_VALUE_CHARS} "
                f"characters, got {len(str(value))}"
            )
        if not value.isprintable():
            raise InvalidArgument(f"label {key!r}: value contains control characters")


def validate_request(req: UploadRequest, max_model_bytes: int) -> None:
    """Header checks that need neither the bytes nor the repository."""
    validate_model_name(req.name)
    formats.check_upload(req.format)
    validate_stream_header(req.size_bytes, req.sha256, req.description, max_model_bytes)
    _validate_labels(req.labels)
    if req.task and req.format != formats.FORMAT_HF_FOLDER:
        raise InvalidArgument(f"task applies to {formats.FORMAT_HF_FOLDER} uploads only")
    if req.task and req.task not in TASKS:
        raise InvalidArgument(f"task must be one of {', '.join(TASKS)}, got {req.task[:100]!r}")


def validate_stream_header(size_bytes: object, sha256: str, description: str, limit: int) -> None:
    """The checks every streamed upload's header gets (models and datasets): declared size
    within PARETO_MAX_MODEL_BYTES, a sha256 hex digest, a bounded description."""
    if not isinstance(size_bytes, int) or size_bytes <= 0:
        raise InvalidArgument(f"size_bytes must be > 0, got {size_bytes!r}")
    if size_bytes > limit:
        raise ResourceExhausted(
            f"size_bytes={size_bytes} exceeds the limit PARETO_MAX_MODEL_BYTES={limit}"
        )
    check_sha256(sha256)
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidArgument(
            f"description must be at most {MAX_DESCRIPTION_CHARS} characters, "
            f"got {len(description)}"
        )


# An archive may unpack to this much whatever its size, before the ratio applies.
EXPANSION_FLOOR_BYTES = 64 * 1024 * 1024
DEFAULT_EXPANSION_RATIO = 100.0
DEFAULT_MAX_TENSOR_ELEMENTS = 1 << 28


class Uploader:
    def __init__(
        self,
        blobs: BlobStore,
        repo: ModelRepository,
        max_model_bytes: int,
        max_unpacked_bytes: int | None = None,
        max_expansion_ratio: float = DEFAULT_EXPANSION_RATIO,
        max_tensor_elements: int = DEFAULT_MAX_TENSOR_ELEMENTS,
    ) -> None:
        self.blobs = blobs
        self.repo = repo
        self.max_model_bytes = max_model_bytes
        # A bundle may unpack larger than it was sent (compression), within reason.
        self.max_unpacked_bytes = max_unpacked_bytes or 4 * max_model_bytes
        self.max_expansion_ratio = max_expansion_ratio
        self.max_tensor_elements = max_tensor_elements

    def unpack_limit(self, packed_bytes: int) -> int:
        """How many bytes an archive of `packed_bytes` may unpack to: at most
        PARETO_MAX_EXPANSION_RATIO times its size (and at least EXPANSION_FLOOR_BYTES), never
        more than the absolute limit. A small file of zeros cannot become gigabytes."""
        by_ratio = int(self.max_expansion_ratio * packed_bytes)
        return min(self.max_unpacked_bytes, max(EXPANSION_FLOOR_BYTES, by_ratio))

    def begin(self, req: UploadRequest) -> Upload:
        """Validate the header and open the staging file. Fails fast on a taken name
        (checked again, atomically, at commit)."""
        validate_request(req, self.max_model_bytes)
        if not req.new_version and self.repo.name_exists(req.name):
            with contextlib.suppress(NotFound):  # deleted meanwhile: let it through
                latest = self.repo.get_model(req.name).version
                raise AlreadyExists(already_exists_message(req.name, latest))
        return Upload(self, req)


class Upload:
    """One upload in progress. Not thread-safe: one stream feeds it."""

    def __init__(self, uploader: Uploader, req: UploadRequest) -> None:
        self._up = uploader
        self.request = req
        self.bytes_received = 0
        self._hash = hashlib.sha256()
        self._staging = uploader.blobs.new_staging_path()
        self._work_dir = uploader.blobs.new_staging_path()
        self._staged: list[Path] = []  # more files to commit (a folder's export)
        self._file: BinaryIO | None = open(self._staging, "xb")  # noqa: SIM115 - closed in finish/abort
        self._state = "open"

    def __enter__(self) -> Upload:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state == "open":
            self.abort()

    def write(self, chunk: bytes) -> None:
        self._require_open()
        assert self._file is not None
        received = self.bytes_received + len(chunk)
        if received > self.request.size_bytes:
            self.abort()
            raise InvalidArgument(
                f"upload of {self.request.name!r} sent more bytes than declared: "
                f"size_bytes={self.request.size_bytes}, received at least {received}"
            )
        self._file.write(chunk)
        self._hash.update(chunk)
        self.bytes_received = received

    def finish(self) -> ModelRecord:
        """Verify size and sha256, inspect the model, then commit the blob (fsynced,
        renamed into place) and only after that write the record."""
        self._require_open()
        try:
            self._close_file()
            self._verify_bytes()
            record = self._store()
        except BaseException:
            self.abort()
            raise
        self._state = "finished"
        return record

    def abort(self) -> None:
        """Drop everything this upload wrote. Safe to call more than once."""
        if self._state == "finished":
            return
        self._state = "aborted"
        with contextlib.suppress(OSError):
            self._close_file()
        self._staging.unlink(missing_ok=True)
        for path in self._staged:
            path.unlink(missing_ok=True)
        shutil.rmtree(self._work_dir, ignore_errors=True)

    # -- steps -------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self._state != "open":
            raise FailedPrecondition(f"upload of {self.request.name!r} is already {self._state}")

    def _close_file(self) -> None:
        if self._file is not None:
            f, self._file = self._file, None
            f.close()

    def _verify_bytes(self) -> None:
        req = self.request
        if self.bytes_received != req.size_bytes:
            raise InvalidArgument(
                f"upload of {req.name!r} is incomplete: size_bytes={req.size_bytes} "
                f"declared, {self.bytes_received} received"
            )
        got = self._hash.hexdigest()
        if got != req.sha256:
            raise InvalidArgument(
                f"upload of {req.name!r} is corrupt: sha256 {req.sha256} declared, {got} received"
            )

    def _inspect(self) -> Signature:
        try:
            limit = self._up.unpack_limit(self.request.size_bytes)
            fmt = self.request.format
            signature = inspect_model(self._staging, fmt, self._work_dir, limit)
            self._check_servable(fmt)
            return signature
        except ParetoError as e:
            raise type(e)(f"model {self.request.name!r}: {e}") from e
        finally:
            shutil.rmtree(self._work_dir, ignore_errors=True)

    def _store(self) -> ModelRecord:
        """Inspect the bytes and commit them with their record (a folder: export it first)."""
        if self.request.format == formats.FORMAT_HF_FOLDER:
            return self._commit_export(self._export())
        return self._commit(self._inspect())

    def _export(self) -> HfExport:
        def new_staging() -> Path:
            self._staged.append(self._up.blobs.new_staging_path())
            return self._staged[-1]

        limits = (self._up.unpack_limit(self.request.size_bytes), self._up.max_tensor_elements)
        try:
            return export_upload(
                self._staging, self._work_dir, self.request.task, new_staging, limits
            )
        except ParetoError as e:
            raise type(e)(f"model {self.request.name!r}: {e}") from e
        finally:
            shutil.rmtree(self._work_dir, ignore_errors=True)

    def _check_servable(self, fmt: str) -> None:
        """An ONNX model must load and run on the runtime plain requests would use (in a
        bounded helper process, runtimes/model_check.py); .pt2 archives were loaded by
        their inspector already."""
        if fmt not in (formats.FORMAT_ONNX, formats.FORMAT_ONNX_BUNDLE):
            return
        onnx_file = self._staging if fmt == formats.FORMAT_ONNX else find_onnx(self._work_dir)
        runtime = registry.runtime_for_format(fmt).name
        check_model(runtime, onnx_file, self._up.max_tensor_elements, onnx=True)

    def _commit(self, signature: Signature) -> ModelRecord:
        req = self.request
        record = self._record(req.format, req.sha256, req.size_bytes, signature)
        return self._add(record, [(self._staging, req.sha256)])

    def _commit_export(self, export: HfExport) -> ModelRecord:
        onnx_sha256 = file_sha256(export.onnx)
        size = export.onnx.stat().st_size
        record = self._record(formats.FORMAT_ONNX, onnx_sha256, size, export.signature)
        record = replace(record, source=export.source)
        files = [(export.onnx, onnx_sha256), (export.folder, export.source.sha256)]
        return self._add(record, files)

    def _record(self, fmt: str, sha256: str, size: int, signature: Signature) -> ModelRecord:
        req = self.request
        return ModelRecord(
            name=req.name,
            version=0,
            format=fmt,
            sha256=sha256,
            size_bytes=size,
            signature=signature,
            description=req.description,
            labels=dict(req.labels),
        )

    def _add(self, record: ModelRecord, files: list[tuple[Path, str]]) -> ModelRecord:
        repo, new_version = self._up.repo, self.request.new_version
        return commit_and_record(
            self._up.blobs, repo, files, lambda: repo.add_model(record, new_version)
        )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def commit_and_record(
    blobs: BlobStore, repo: ModelRepository, files: list[tuple[Path, str]], add: Callable[[], T]
) -> T:
    """Commit each staged file as its blob (path, sha256), then write their record with
    `add()`. If that fails, the blobs go again unless they were there before or a record
    refers to them."""
    with blobs.lock:
        new = [sha256 for _, sha256 in files if not blobs.exists(sha256)]
        for staging, sha256 in files:
            blobs.commit(staging, sha256)
        try:
            return add()
        except BaseException:
            for sha256 in new:
                delete_if_unreferenced(blobs, repo, sha256)
            raise


def delete_if_unreferenced(blobs: BlobStore, repo: ModelRepository, sha256: str) -> None:
    """Best effort: if the repository cannot answer, `recover_store` collects it later."""
    with contextlib.suppress(Exception):
        if sha256 not in repo.referenced_blobs():
            blobs.delete(sha256)


def delete_model(
    blobs: BlobStore,
    repo: ModelRepository,
    name: str,
    version: int = 0,
    check: Callable[[], None] | None = None,
) -> list[ModelRecord]:
    """Delete model records (version 0: all versions; `check` as in the repository), then
    the blobs that no remaining record refers to (two models may share one blob)."""
    with blobs.lock:
        deleted = repo.delete_model(name, version, check)
        for sha in {sha for r in deleted for sha in r.blobs}:
            delete_if_unreferenced(blobs, repo, sha)
    return deleted


def recover_store(blobs: BlobStore, repo: ModelRepository) -> list[str]:
    """Start-up recovery after a crash: clear staging, collect orphan blobs."""
    with blobs.lock:
        blobs.clean_staging()
        return blobs.garbage_collect(repo.referenced_blobs())
