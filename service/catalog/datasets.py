"""Datasets: `.npz` archives of named input arrays (first axis = samples) and optional
`labels`, used by compression jobs to calibrate, fine-tune and evaluate.

Uploading reuses the model upload pipeline (`service.catalog.uploads.Upload`: staging file, size
and sha256 checks, abort on any error, blob committed before the record), with the
archive checks below in place of the model inspection. Nothing is unpickled, ever:
every array's `.npy` header is read first (dtype, shape: object arrays are refused, the
unpacked size is bounded before anything is allocated), then arrays load with
`numpy.load(allow_pickle=False)`.
"""

from __future__ import annotations

import contextlib
import math
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from compressors.base import Dataset
from pareto_core.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    ParetoError,
    ResourceExhausted,
)
from pareto_core.tensors import KSERVE_TO_NUMPY, NUMPY_TO_KSERVE, Signature, TensorSpec
from service.catalog.uploads import (
    Upload,
    Uploader,
    commit_and_record,
    delete_if_unreferenced,
    validate_model_name,
    validate_stream_header,
)
from service.store.blobs import BlobStore
from service.store.interfaces import Repository
from service.store.records import DatasetRecord
from service.store.sql_datasets import dataset_exists_message

LABELS = "labels"
_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"
_PICKLE_REFUSED = "pickled objects are refused (only plain numeric arrays are accepted)"
# What zipfile and numpy raise on a corrupt archive or member (found by tests/fuzz):
# bad deflate data, cut streams, unknown zip versions or methods, "encrypted" members,
# and .npy header text that does not parse.
_CORRUPT = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    NotImplementedError,
    RuntimeError,
    ValueError,
)
_BAD_HEADER = (ValueError, SyntaxError, tokenize.TokenError)


@dataclass(frozen=True)
class DatasetUploadRequest:
    name: str
    size_bytes: int
    sha256: str
    description: str = ""


@dataclass(frozen=True)
class NpzContents:
    arrays: tuple[TensorSpec, ...]
    num_samples: int
    has_labels: bool


def validate_dataset_request(req: DatasetUploadRequest, max_bytes: int) -> None:
    validate_model_name(req.name)
    validate_stream_header(req.size_bytes, req.sha256, req.description, max_bytes)


# -- reading and checking an archive -------------------------------------------------------


def _read_npy_header(fp: IO[bytes], member: str) -> tuple[tuple[int, ...], np.dtype]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(fp)
        else:
            raise InvalidArgument(f"member {member!r}: .npy format version {version} unsupported")
    except _BAD_HEADER as exc:
        raise InvalidArgument(f"member {member!r} is not a valid .npy array: {exc}") from None
    return tuple(shape), dtype


def _array_spec(name: str, shape: tuple[int, ...], dtype: np.dtype) -> TensorSpec:
    if not name:
        raise InvalidArgument("an array of the archive has an empty name")
    if dtype.hasobject:
        raise InvalidArgument(f"array {name!r} holds Python objects: {_PICKLE_REFUSED}")
    datatype = NUMPY_TO_KSERVE.get(dtype.newbyteorder("="))
    if datatype is None:
        raise InvalidArgument(
            f"array {name!r} has dtype {dtype}; supported (KServe numeric types): "
            f"{', '.join(KSERVE_TO_NUMPY)}"
        )
    if not shape:
        raise InvalidArgument(
            f"array {name!r} is a scalar; every array needs a first (samples) dimension"
        )
    if any(d < 0 for d in shape):
        raise InvalidArgument(f"array {name!r} declares a negative dimension: {list(shape)}")
    return TensorSpec(name, datatype, shape)


def _check_magic(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(_ZIP_MAGIC):
        return
    if head.startswith(_NPY_MAGIC):
        raise InvalidArgument("expected a .npz archive (numpy.savez), got a single .npy array")
    if head[:1] == b"\x80":
        raise InvalidArgument(f"expected a .npz archive, got a Python pickle: {_PICKLE_REFUSED}")
    raise InvalidArgument("expected a .npz archive (numpy.savez), got a file that is not a zip")


def _headers(path: Path, max_unpacked_bytes: int) -> tuple[TensorSpec, ...]:
    specs, total = [], 0
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if not member.endswith(".npy"):
                    raise InvalidArgument(f"member {member!r} of the archive is not a .npy array")
                with archive.open(member) as fp:
                    shape, dtype = _read_npy_header(fp, member)
                spec = _array_spec(member.removesuffix(".npy"), shape, dtype)
                total += math.prod(shape) * dtype.itemsize
                specs.append(spec)
    except _CORRUPT as exc:
        raise InvalidArgument(f"not a valid .npz archive: {exc}") from None
    if total > max_unpacked_bytes:
        raise ResourceExhausted(
            f"the arrays unpack to {total} bytes, over the limit of {max_unpacked_bytes} "
            "(PARETO_MAX_EXPANSION_RATIO times the archive's size, at most "
            "PARETO_MAX_UNPACKED_BYTES)"
        )
    return tuple(specs)


def _check_samples(specs: tuple[TensorSpec, ...]) -> int:
    if not any(s.name != LABELS for s in specs):
        raise InvalidArgument(
            f"the archive holds no input array (arrays: {[s.name for s in specs]}); "
            "save each model input under its input name, plus optional `labels`"
        )
    counts = {s.name: s.shape[0] for s in specs}
    if len(set(counts.values())) > 1:
        got = ", ".join(f"{n!r} has {c}" for n, c in counts.items())
        raise InvalidArgument(
            f"every array must have the same number of samples (first dimension): {got}"
        )
    samples = next(iter(counts.values()))
    if samples == 0:
        raise InvalidArgument("the arrays hold 0 samples")
    return samples


def inspect_npz(path: Path, max_unpacked_bytes: int) -> NpzContents:
    """Check a dataset archive without unpickling anything; InvalidArgument naming the
    array when it is not acceptable, ResourceExhausted when it unpacks too large."""
    _check_magic(path)
    specs = _headers(path, max_unpacked_bytes)
    samples = _check_samples(specs)
    try:
        with np.load(path, allow_pickle=False) as npz:
            for spec in specs:
                npz[spec.name]  # reads (and CRC-checks) every array once
    except _CORRUPT as exc:
        raise InvalidArgument(f"cannot read the arrays of the archive: {exc}") from None
    return NpzContents(specs, samples, any(s.name == LABELS for s in specs))


# -- upload and delete -------------------------------------------------------------------


class DatasetUploader(Uploader):
    """An `Uploader` for datasets; `max_model_bytes` (PARETO_MAX_MODEL_BYTES) bounds them
    too. `repo` must be a Repository (models and datasets)."""

    repo: Repository

    def begin(self, req: DatasetUploadRequest) -> DatasetUpload:
        validate_dataset_request(req, self.max_model_bytes)
        with contextlib.suppress(NotFound):  # checked again, atomically, at commit
            self.repo.get_dataset(req.name)
            raise AlreadyExists(dataset_exists_message(req.name))
        return DatasetUpload(self, req)


class DatasetUpload(Upload):
    """An `Upload` whose inspection is `inspect_npz` and whose record is a DatasetRecord
    (the hooks `_inspect` and `_commit` of `Upload.finish`, overridden)."""

    _up: DatasetUploader

    def _store(self) -> DatasetRecord:  # type: ignore[override]
        return self._commit(self._inspect())

    def _inspect(self) -> NpzContents:
        try:
            return inspect_npz(self._staging, self._up.unpack_limit(self.request.size_bytes))
        except ParetoError as e:
            raise type(e)(f"dataset {self.request.name!r}: {e}") from e

    def _commit(self, contents: NpzContents) -> DatasetRecord:
        req, repo = self.request, self._up.repo
        record = DatasetRecord(
            name=req.name,
            sha256=req.sha256,
            size_bytes=req.size_bytes,
            arrays=contents.arrays,
            num_samples=contents.num_samples,
            has_labels=contents.has_labels,
            description=req.description,
        )
        files = [(self._staging, req.sha256)]
        return commit_and_record(self._up.blobs, repo, files, lambda: repo.add_dataset(record))


def delete_dataset(blobs: BlobStore, repo: Repository, name: str) -> DatasetRecord:
    """Delete the record (refused while a queued/running job uses it), then its blob
    unless another record refers to the same content."""
    with blobs.lock:
        record = repo.delete_dataset(name)
        delete_if_unreferenced(blobs, repo, record.sha256)
    return record


# -- use by jobs -------------------------------------------------------------------------


def load_dataset(blobs: BlobStore, record: DatasetRecord) -> Dataset:
    """The arrays of a stored dataset, in native byte order (for the job worker)."""
    with np.load(blobs.path(record.sha256), allow_pickle=False) as npz:
        arrays = {s.name: npz[s.name] for s in record.arrays}
    arrays = {k: v.astype(v.dtype.newbyteorder("="), copy=False) for k, v in arrays.items()}
    labels = arrays.pop(LABELS, None)
    return Dataset(name=record.name, inputs=arrays, labels=labels)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def check_dataset_matches(record: DatasetRecord, signature: Signature, role: str) -> None:
    """InvalidArgument unless the dataset holds an array for every model input, with the
    input's datatype, rank and fixed non-batch dimensions."""
    arrays = {s.name: s for s in record.arrays if s.name != LABELS}
    where = f"datasets[{role!r}]: dataset {record.name!r}"
    for spec in signature.inputs:
        got = arrays.get(spec.name)
        if got is None:
            raise InvalidArgument(
                f"{where} has no array {spec.name!r} for model input {spec.name!r} "
                f"{spec.datatype}{_shape_text(spec.shape)} (it has: {', '.join(arrays)})"
            )
        expected = f"model input {spec.name!r} is {spec.datatype}{_shape_text(spec.shape)}"
        actual = f"array {spec.name!r} is {got.datatype}{_shape_text(got.shape)}"
        if got.datatype != spec.datatype:
            raise InvalidArgument(f"{where}: {expected}, but {actual} (datatype differs)")
        if len(got.shape) != len(spec.shape):
            raise InvalidArgument(f"{where}: {expected}, but {actual} (rank differs)")
        for axis, (want, have) in enumerate(zip(spec.shape[1:], got.shape[1:], strict=True), 1):
            if want >= 0 and want != have:
                raise InvalidArgument(
                    f"{where}: {expected}, but {actual} (dimension {axis}: expected {want}, "
                    f"got {have})"
                )
