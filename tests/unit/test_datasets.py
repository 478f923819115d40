"""Dataset archives: validation without unpickling, upload through the real store, loading
for jobs and matching against a model's inputs."""

from __future__ import annotations

import hashlib
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pareto_core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from pareto_core.tensors import Signature, TensorSpec
from service.catalog.datasets import (
    DatasetUploader,
    DatasetUploadRequest,
    check_dataset_matches,
    delete_dataset,
    inspect_npz,
    load_dataset,
)
from service.store.records import DatasetRecord, JobRecord, RecipeSpec
from tests.helpers.store_backends import create_job

LIMIT = 10 * 1024 * 1024
DIGITS = Signature(
    (TensorSpec("pixels", "FP32", (-1, 1, 8, 8)),), (TensorSpec("logits", "FP32", (-1, 10)),)
)
TEXT = Signature(
    (TensorSpec("input_ids", "INT64", (-1, -1)), TensorSpec("attention_mask", "INT64", (-1, -1))),
    (TensorSpec("embedding", "FP32", (-1, 384)),),
)


def npz_bytes(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def write(tmp_path: Path, data: bytes, name: str = "d.npz") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def digits_arrays(n: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "pixels": rng.random((n, 1, 8, 8), dtype=np.float32),
        "labels": np.arange(n, dtype=np.int64) % 10,
    }


# -- inspect_npz ---------------------------------------------------------------------------


def test_a_good_archive_is_described_array_by_array(tmp_path):
    contents = inspect_npz(write(tmp_path, npz_bytes(**digits_arrays())), LIMIT)
    assert contents.arrays == (
        TensorSpec("pixels", "FP32", (6, 1, 8, 8)),
        TensorSpec("labels", "INT64", (6,)),
    )
    assert (contents.num_samples, contents.has_labels) == (6, True)
    unlabeled = npz_bytes(compressed=True, input_ids=np.ones((3, 7), np.int64))
    contents = inspect_npz(write(tmp_path, unlabeled), LIMIT)
    assert (contents.num_samples, contents.has_labels) == (3, False)


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (npz_bytes(x=np.array([{"a": 1}, None], dtype=object)), "'x' holds Python objects.*pickle"),
        (pickle.dumps({"x": np.zeros(3)}), "got a Python pickle: pickled objects are refused"),
        (b"\x93NUMPY" + b"\0" * 20, "got a single .npy array"),
        (b"hello world", "not a zip"),
        (b"PK\x03\x04 broken", "not a valid .npz archive"),
        (
            npz_bytes(pixels=np.zeros((5, 2), np.float32), labels=np.zeros(4, np.int64)),
            "same number of samples.*'pixels' has 5, 'labels' has 4",
        ),
        (npz_bytes(labels=np.zeros(4, np.int64)), "no input array"),
        (npz_bytes(x=np.float32(1.0)), "'x' is a scalar"),
        (npz_bytes(x=np.array(["a", "b"])), "'x' has dtype <U1; supported"),
        (npz_bytes(x=np.zeros(2, np.complex64)), "'x' has dtype complex64"),
        (npz_bytes(x=np.zeros((0, 3), np.float32)), "0 samples"),
    ],
    ids=[
        "object-array",
        "raw-pickle",
        "npy",
        "not-zip",
        "broken-zip",
        "sample-mismatch",
        "labels-only",
        "scalar",
        "strings",
        "complex",
        "empty",
    ],
)
def test_bad_archives_are_refused_naming_the_problem(tmp_path, data, pattern):
    with pytest.raises(InvalidArgument, match=pattern):
        inspect_npz(write(tmp_path, data), LIMIT)


def test_a_zip_member_that_is_not_an_array_is_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(InvalidArgument, match=r"'notes.txt' of the archive is not a \.npy array"):
        inspect_npz(write(tmp_path, buffer.getvalue()), LIMIT)


def test_the_unpacked_size_is_bounded_before_anything_is_loaded(tmp_path):
    data = npz_bytes(compressed=True, x=np.zeros((1024, 1024), np.float32))  # 4 MiB of zeros
    assert len(data) < 100_000
    with pytest.raises(ResourceExhausted, match="unpack to 4194304 bytes, over the limit"):
        inspect_npz(write(tmp_path, data), 1024 * 1024)


def test_big_endian_arrays_are_accepted_and_loaded_native(tmp_path, store):
    data = npz_bytes(x=np.arange(4, dtype=">f4").reshape(4, 1))
    assert inspect_npz(write(tmp_path, data), LIMIT).arrays == (TensorSpec("x", "FP32", (4, 1)),)
    record = upload(store, "be", data)
    loaded = load_dataset(store.blobs, record)
    assert loaded.inputs["x"].dtype == np.dtype(np.float32) and loaded.inputs["x"][3, 0] == 3.0


# -- upload, load, delete through the real store -----------------------------------------


def uploader(store) -> DatasetUploader:
    return DatasetUploader(store.blobs, store.repo, max_model_bytes=LIMIT)


def upload(store, name: str, data: bytes, sha256: str | None = None, size: int | None = None):
    request = DatasetUploadRequest(
        name, size or len(data), sha256 or hashlib.sha256(data).hexdigest(), "test set"
    )
    with uploader(store).begin(request) as up:
        for i in range(0, len(data), 1000):
            up.write(data[i : i + 1000])
        return up.finish()


def assert_nothing_stored(store) -> None:
    assert store.tmp_entries() == [] and store.blob_files() == []
    assert store.repo.list_datasets() == []


def test_upload_stores_the_blob_and_the_record_then_loads(store):
    arrays = digits_arrays()
    record = upload(store, "digits-test", npz_bytes(**arrays))
    assert record.has_labels and record.num_samples == 6 and record.description == "test set"
    assert store.repo.get_dataset("digits-test") == record
    assert store.blob_files() == [store.blobs.path(record.sha256)] and store.tmp_entries() == []
    loaded = load_dataset(store.blobs, record)
    assert loaded.name == "digits-test" and loaded.num_samples == 6
    assert np.array_equal(loaded.inputs["pixels"], arrays["pixels"])
    assert np.array_equal(loaded.labels, arrays["labels"]) and list(loaded.inputs) == ["pixels"]


@pytest.mark.parametrize(
    ("arrays", "sha", "error", "pattern"),
    [
        ({"x": np.array([object()], dtype=object)}, None, InvalidArgument, "pickle"),
        ({"x": np.zeros((3, 1)), "labels": np.zeros(2)}, None, InvalidArgument, "samples"),
        ({"x": np.zeros((3, 1))}, "0" * 64, InvalidArgument, "corrupt: sha256"),
    ],
    ids=["pickled", "mismatched-samples", "wrong-sha"],
)
def test_a_bad_upload_leaves_no_trace(store, arrays, sha, error, pattern):
    with pytest.raises(error, match=pattern):
        upload(store, "bad", npz_bytes(**arrays), sha256=sha)
    assert_nothing_stored(store)


def test_header_problems_fail_before_any_byte(store):
    data = npz_bytes(**digits_arrays())
    sha = hashlib.sha256(data).hexdigest()
    with pytest.raises(ResourceExhausted, match="PARETO_MAX_MODEL_BYTES"):
        uploader(store).begin(DatasetUploadRequest("big", LIMIT + 1, sha))
    with pytest.raises(InvalidArgument, match="name must match"):
        uploader(store).begin(DatasetUploadRequest("../etc", 10, sha))
    with pytest.raises(InvalidArgument, match="sha256 must be 64"):
        uploader(store).begin(DatasetUploadRequest("ok", 10, "xyz"))
    upload(store, "taken", data)
    with pytest.raises(AlreadyExists, match="dataset 'taken' already exists"):
        uploader(store).begin(DatasetUploadRequest("taken", len(data), sha))


def test_delete_removes_the_blob_once_nothing_refers_to_it(store):
    data = npz_bytes(**digits_arrays())
    first, second = upload(store, "a", data), upload(store, "b", data)  # one blob, two records
    assert delete_dataset(store.blobs, store.repo, "a") == first
    assert store.blobs.exists(second.sha256)
    delete_dataset(store.blobs, store.repo, "b")
    assert not store.blobs.exists(second.sha256)
    with pytest.raises(NotFound):
        delete_dataset(store.blobs, store.repo, "b")


def test_delete_is_refused_while_a_queued_job_uses_the_dataset(store):
    record = upload(store, "calib", npz_bytes(**digits_arrays()))
    recipe = RecipeSpec("r", ({"technique": "quantize.dynamic", "config": {}},))
    create_job(store.repo, JobRecord("job-1", "m", 1, (recipe,), {"calibration": "calib"}, {}, {}))
    with pytest.raises(FailedPrecondition, match="job-1"):
        delete_dataset(store.blobs, store.repo, "calib")
    assert store.blobs.exists(record.sha256)


# -- check_dataset_matches ----------------------------------------------------------------


def record_of(tmp_path: Path, **arrays: np.ndarray) -> DatasetRecord:
    contents = inspect_npz(write(tmp_path, npz_bytes(**arrays)), LIMIT)
    return DatasetRecord("ds", "a" * 64, 1, contents.arrays, contents.num_samples, False)


def test_matching_datasets_pass(tmp_path):
    check_dataset_matches(record_of(tmp_path, **digits_arrays()), DIGITS, "calibration")
    ids = np.ones((4, 32), np.int64)
    text = record_of(tmp_path, input_ids=ids, attention_mask=ids, extra=np.zeros(4))
    check_dataset_matches(text, TEXT, "evaluation")  # dynamic dims take any size


@pytest.mark.parametrize(
    ("arrays", "pattern"),
    [
        (
            {"image": np.zeros((2, 1, 8, 8), np.float32)},
            r"datasets\['calibration'\]: dataset 'ds' has no array 'pixels' for model input "
            r"'pixels' FP32\[-1,1,8,8\] \(it has: image\)",
        ),
        (
            {"pixels": np.zeros((2, 1, 8, 8), np.float64)},
            r"'pixels' is FP32\[-1,1,8,8\], but array 'pixels' is FP64\[2,1,8,8\] \(datatype",
        ),
        (
            {"pixels": np.zeros((2, 1, 4, 4), np.float32)},
            r"but array 'pixels' is FP32\[2,1,4,4\] \(dimension 2: expected 8, got 4\)",
        ),
        ({"pixels": np.zeros((2, 64), np.float32)}, r"\(rank differs\)"),
    ],
    ids=["missing", "dtype", "dims", "rank"],
)
def test_mismatched_datasets_name_the_array_expected_and_got(tmp_path, arrays, pattern):
    with pytest.raises(InvalidArgument, match=pattern):
        check_dataset_matches(record_of(tmp_path, **arrays), DIGITS, "calibration")
