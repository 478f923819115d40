"""The upload pipeline end to end on a real blob store and SQLite file.

Every failure case checks that nothing is left behind: no file in tmp/ or blobs/ and no
row in the repository.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile

import pytest

from pareto_core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, ResourceExhausted
from service.catalog.uploads import UploadRequest, delete_model, recover_store
from service.store.bundles import find_onnx


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def request(data: bytes, name: str = "tiny", fmt: str = "onnx", **kw) -> UploadRequest:
    return UploadRequest(name=name, format=fmt, size_bytes=len(data), sha256=sha(data), **kw)


def upload(store, data: bytes, req: UploadRequest | None = None, chunk: int = 100):
    with store.uploader.begin(req or request(data)) as up:
        for i in range(0, len(data), chunk):
            up.write(data[i : i + chunk])
        return up.finish()


def zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


# -- success ---------------------------------------------------------------------------


def test_onnx_upload_becomes_a_record(store, onnx_bytes):
    req = request(onnx_bytes, description="tiny matmul", labels={"team": "vision"})
    record = upload(store, onnx_bytes, req)
    assert (record.name, record.version, record.format) == ("tiny", 1, "onnx")
    assert record.sha256 == sha(onnx_bytes) and record.size_bytes == len(onnx_bytes)
    assert record.labels == {"team": "vision"} and record.description == "tiny matmul"
    assert [t.name for t in record.signature.inputs] == ["X"]
    assert store.blobs.path(record.sha256).read_bytes() == onnx_bytes
    assert store.repo.get_model("tiny") == record
    store.assert_no_trace(expected_blobs=1, expected_rows=1)


def test_bundle_upload_unpacks_for_serving(store, onnx_bytes):
    data = zip_of({"bundle/model.onnx": onnx_bytes, "bundle/README": b"hello"})
    record = upload(store, data, request(data, fmt="onnx_bundle"))
    assert record.signature.outputs[0].name == "Y"
    unpacked = store.blobs.unpacked_dir(record.sha256)
    assert find_onnx(unpacked).read_bytes() == onnx_bytes
    store.assert_no_trace(expected_blobs=1, expected_rows=1)


def test_torch_export_upload(store, pt2_bytes):
    record = upload(store, pt2_bytes, request(pt2_bytes, fmt="torch_export"), chunk=4096)
    assert record.signature.inputs[0].shape == (-1, 4)
    store.assert_no_trace(expected_blobs=1, expected_rows=1)


def test_duplicate_name_and_new_version(store, onnx_bytes):
    upload(store, onnx_bytes)
    with pytest.raises(AlreadyExists, match=r"'tiny' already exists.*new_version=true"):
        store.uploader.begin(request(onnx_bytes))
    store.assert_no_trace(expected_blobs=1, expected_rows=1)
    second = upload(store, onnx_bytes, request(onnx_bytes, new_version=True))
    assert second.version == 2
    store.assert_no_trace(expected_blobs=1, expected_rows=2)  # same content, one blob


# -- header ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"name": "-bad"}, InvalidArgument, "name must match"),
        ({"name": "a" * 129}, InvalidArgument, "name must match"),
        ({"name": "a/b"}, InvalidArgument, "name must match"),
        ({"format": "pickle"}, InvalidArgument, "format must be one of onnx, onnx_bundle"),
        ({"size_bytes": 0}, InvalidArgument, "size_bytes must be > 0"),
        ({"sha256": "ABC"}, InvalidArgument, "sha256 must be 64 lower-case hex"),
        ({"labels": {"bad key!": "v"}}, InvalidArgument, "label key 'bad key!'"),
        ({"labels": {"k": "v" * 300}}, InvalidArgument, "at most 256 characters"),
        ({"labels": {"k": "a\nb"}}, InvalidArgument, "control characters"),
        ({"description": "d" * 5000}, InvalidArgument, "description must be at most"),
    ],
)
def test_header_is_validated_at_once(store, onnx_bytes, change, error, message):
    fields = {**request(onnx_bytes).__dict__, **change}
    with pytest.raises(error, match=message):
        store.uploader.begin(UploadRequest(**fields))
    store.assert_no_trace()


def test_oversize_names_the_setting_and_both_numbers(store):
    limit = store.uploader.max_model_bytes
    req = UploadRequest("big", "onnx", limit + 1, "a" * 64)
    with pytest.raises(ResourceExhausted) as e:
        store.uploader.begin(req)
    assert f"size_bytes={limit + 1}" in str(e.value)
    assert f"PARETO_MAX_MODEL_BYTES={limit}" in str(e.value)
    store.assert_no_trace()


# -- bytes -----------------------------------------------------------------------------


def test_truncated_upload(store, onnx_bytes):
    with store.uploader.begin(request(onnx_bytes)) as up:
        up.write(onnx_bytes[:-10])
        with pytest.raises(InvalidArgument, match=rf"size_bytes={len(onnx_bytes)} declared, "):
            up.finish()
    store.assert_no_trace()


def test_more_bytes_than_declared_fails_at_once(store, onnx_bytes):
    req = UploadRequest("tiny", "onnx", 10, sha(onnx_bytes[:10]))
    with store.uploader.begin(req) as up:
        with pytest.raises(InvalidArgument, match="more bytes than declared: size_bytes=10"):
            up.write(onnx_bytes[:11])
        store.assert_no_trace()
        with pytest.raises(FailedPrecondition, match="already aborted"):
            up.write(b"x")


def test_wrong_sha256(store, onnx_bytes):
    req = UploadRequest("tiny", "onnx", len(onnx_bytes), "0" * 64)
    with pytest.raises(InvalidArgument, match=f"sha256 {'0' * 64} declared, {sha(onnx_bytes)}"):
        upload(store, onnx_bytes, req)
    store.assert_no_trace()


def test_garbage_onnx(store):
    data = b"\x00not an onnx model\xff" * 50
    with pytest.raises(InvalidArgument, match="model 'tiny': uploaded file is not a valid ONNX"):
        upload(store, data)
    store.assert_no_trace()


def test_bundle_with_dotdot_external_data(store, onnx_model_factory, tmp_path):
    import onnx

    model = onnx_model_factory()
    onnx.save_model(
        model, tmp_path / "m.onnx", save_as_external_data=True, location="w.bin", size_threshold=0
    )
    saved = onnx.load(tmp_path / "m.onnx", load_external_data=False)
    for t in saved.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../w.bin"
    data = zip_of(
        {"m/model.onnx": saved.SerializeToString(), "w.bin": (tmp_path / "w.bin").read_bytes()}
    )
    with pytest.raises(InvalidArgument, match=r"stores its data in '\.\./w\.bin'"):
        upload(store, data, request(data, fmt="onnx_bundle"))
    store.assert_no_trace()


def test_bundle_with_absolute_member(store, onnx_bytes):
    data = zip_of({"model.onnx": onnx_bytes, "/tmp/evil": b"x"})
    with pytest.raises(InvalidArgument, match="'/tmp/evil' is an absolute path"):
        upload(store, data, request(data, fmt="onnx_bundle"))
    store.assert_no_trace()


def test_bundle_with_symlink_member(store, onnx_bytes):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("model.onnx")
        info.size = len(onnx_bytes)
        tf.addfile(info, io.BytesIO(onnx_bytes))
        link = tarfile.TarInfo("weights.bin")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    data = buf.getvalue()
    with pytest.raises(InvalidArgument, match=r"'weights\.bin' is a symlink"):
        upload(store, data, request(data, fmt="onnx_bundle"))
    store.assert_no_trace()


def test_bundle_bomb_is_stopped(store, onnx_bytes):
    store.uploader.max_unpacked_bytes = 1024 * 1024
    data = zip_of({"model.onnx": onnx_bytes, "zeros.bin": b"\0" * (2 * 1024 * 1024)})
    with pytest.raises(ResourceExhausted, match="limit of 1048576 bytes"):
        upload(store, data, request(data, fmt="onnx_bundle"))
    store.assert_no_trace()


# -- lifecycle -------------------------------------------------------------------------


def test_exception_in_with_block_aborts(store, onnx_bytes):
    with pytest.raises(ConnectionError), store.uploader.begin(request(onnx_bytes)) as up:
        up.write(onnx_bytes[:50])
        raise ConnectionError("client went away")
    store.assert_no_trace()
    up.abort()  # twice is fine


def test_leaving_without_finish_aborts(store, onnx_bytes):
    with store.uploader.begin(request(onnx_bytes)) as up:
        up.write(onnx_bytes)
    assert up.bytes_received == len(onnx_bytes)
    store.assert_no_trace()
    with pytest.raises(FailedPrecondition):
        up.finish()


def test_name_taken_between_begin_and_finish(store, onnx_bytes, onnx_model_factory):
    other = onnx_model_factory(batch=4).SerializeToString()
    first = store.uploader.begin(request(onnx_bytes))
    second = store.uploader.begin(request(other))  # both pass the fail-fast check
    first.write(onnx_bytes)
    first.finish()
    second.write(other)
    with pytest.raises(AlreadyExists):
        second.finish()
    assert not store.blobs.exists(sha(other))  # its freshly committed blob is gone
    store.assert_no_trace(expected_blobs=1, expected_rows=1)


def test_losing_race_keeps_a_shared_blob(store, onnx_bytes):
    first = store.uploader.begin(request(onnx_bytes))
    second = store.uploader.begin(request(onnx_bytes))
    first.write(onnx_bytes)
    first.finish()
    second.write(onnx_bytes)
    with pytest.raises(AlreadyExists):
        second.finish()
    assert store.blobs.exists(sha(onnx_bytes))  # still referenced by the first
    store.assert_no_trace(expected_blobs=1, expected_rows=1)


def test_delete_keeps_blobs_still_referenced(store, onnx_bytes):
    upload(store, onnx_bytes, request(onnx_bytes, name="a"))
    upload(store, onnx_bytes, request(onnx_bytes, name="b"))
    assert [r.name for r in delete_model(store.blobs, store.repo, "a")] == ["a"]
    assert store.blobs.exists(sha(onnx_bytes))
    delete_model(store.blobs, store.repo, "b")
    store.assert_no_trace()


def test_recover_store_after_a_crash(store, onnx_bytes):
    record = upload(store, onnx_bytes)
    store.blobs.new_staging_path().write_bytes(b"half an upload")  # killed mid-stream
    orphan = b"committed, but the row was never written"
    staging = store.blobs.new_staging_path()
    staging.write_bytes(orphan)
    store.blobs.commit(staging, sha(orphan))  # killed between blob and row
    assert recover_store(store.blobs, store.repo) == [sha(orphan)]
    assert store.blobs.exists(record.sha256)
    store.assert_no_trace(expected_blobs=1, expected_rows=1)
