"""Safe extraction of ONNX bundles: real .zip/.tar/.tar.gz files built in the test."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from pareto_core.errors import InvalidArgument, ResourceExhausted
from service.store.bundles import detect_archive_type, find_onnx, safe_extract

LIMIT = 1024 * 1024


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def make_tar(path: Path, members: dict[str, bytes], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def tar_with(path: Path, info: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w") as tf:
        tf.addfile(info)
    return path


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


MEMBERS = {"model/model.onnx": b"onnx", "model/weights.bin": b"w" * 100, "README": b"hi"}


@pytest.mark.parametrize(
    ("builder", "kind"),
    [
        (lambda p: make_zip(p, MEMBERS), "zip"),
        (lambda p: make_tar(p, MEMBERS), "tar"),
        (lambda p: make_tar(p, MEMBERS, "w:gz"), "tar.gz"),
    ],
)
def test_extracts_each_archive_type_detected_by_content(tmp_path, dest, builder, kind):
    archive = builder(tmp_path / "bundle.bin")  # the name says nothing about the type
    assert detect_archive_type(archive) == kind
    safe_extract(archive, dest, LIMIT)
    assert (dest / "model/weights.bin").read_bytes() == b"w" * 100
    assert find_onnx(dest) == dest / "model/model.onnx"
    assert stat.S_IMODE((dest / "README").stat().st_mode) == 0o644


def test_not_an_archive(tmp_path, dest):
    junk = tmp_path / "model.zip"
    junk.write_bytes(b"definitely not an archive" * 30)
    with pytest.raises(InvalidArgument, match=r"not a \.zip, \.tar or \.tar\.gz"):
        safe_extract(junk, dest, LIMIT)


def test_truncated_zip_is_rejected(tmp_path, dest):
    archive = make_zip(tmp_path / "b.zip", MEMBERS)
    archive.write_bytes(archive.read_bytes()[:40])
    with pytest.raises(InvalidArgument, match="damaged zip"):
        safe_extract(archive, dest, LIMIT)


@pytest.mark.parametrize("name", ["/etc/passwd", "C:/evil.onnx"])
def test_absolute_member_rejected(tmp_path, dest, name):
    with pytest.raises(InvalidArgument, match="absolute path") as e:
        safe_extract(make_zip(tmp_path / "b.zip", {name: b"x"}), dest, LIMIT)
    assert name in str(e.value)
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("name", ["../evil.onnx", "a/../../evil", "a/./../b"])
def test_dotdot_member_rejected(tmp_path, dest, name):
    with pytest.raises(InvalidArgument, match=r"'\.\.' component"):
        safe_extract(make_tar(tmp_path / "b.tar", {"ok.onnx": b"x", name: b"x"}), dest, LIMIT)
    assert list(dest.iterdir()) == []  # checked before anything is written


def test_tar_symlink_rejected(tmp_path, dest):
    info = tarfile.TarInfo("weights.bin")
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(InvalidArgument, match=r"'weights\.bin' is a symlink"):
        safe_extract(tar_with(tmp_path / "b.tar", info), dest, LIMIT)


def test_tar_hardlink_rejected(tmp_path, dest):
    info = tarfile.TarInfo("weights.bin")
    info.type, info.linkname = tarfile.LNKTYPE, "/etc/passwd"
    with pytest.raises(InvalidArgument, match="hardlink"):
        safe_extract(tar_with(tmp_path / "b.tar", info), dest, LIMIT)


def test_tar_device_rejected(tmp_path, dest):
    info = tarfile.TarInfo("dev")
    info.type = tarfile.CHRTYPE
    with pytest.raises(InvalidArgument, match="'dev' is a device"):
        safe_extract(tar_with(tmp_path / "b.tar", info), dest, LIMIT)


def test_zip_symlink_rejected(tmp_path, dest):
    archive = tmp_path / "b.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("link.bin")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(InvalidArgument, match=r"'link\.bin' is a symlink"):
        safe_extract(archive, dest, LIMIT)


def test_duplicate_member_rejected(tmp_path, dest):
    archive = tmp_path / "b.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("m.onnx", b"a")
        zf.writestr("./m.onnx", b"b")  # the same path once normalised
    with pytest.raises(InvalidArgument, match="appears more than once"):
        safe_extract(archive, dest, LIMIT)


def test_file_and_directory_of_same_name_rejected(tmp_path, dest):
    archive = make_tar(tmp_path / "b.tar", {"a": b"file", "a/b.onnx": b"x"})
    with pytest.raises(InvalidArgument, match="conflicts"):
        safe_extract(archive, dest, LIMIT)


def test_too_many_members_rejected(tmp_path, dest):
    archive = make_zip(tmp_path / "b.zip", {f"f{i}": b"" for i in range(6)})
    with pytest.raises(InvalidArgument, match="more than 5 members"):
        safe_extract(archive, dest, LIMIT, max_members=5)


def test_zip_bomb_stopped_by_size_limit(tmp_path, dest):
    archive = make_zip(tmp_path / "b.zip", {"big.bin": b"\0" * (2 * LIMIT)})
    assert archive.stat().st_size < LIMIT // 100  # compresses extremely well
    with pytest.raises(ResourceExhausted, match=f"limit of {LIMIT} bytes"):
        safe_extract(archive, dest, LIMIT)
    assert list(dest.iterdir()) == []


def test_find_onnx_needs_exactly_one(tmp_path):
    (tmp_path / "a.onnx").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.ONNX").write_bytes(b"x")
    with pytest.raises(InvalidArgument, match=r"exactly one \.onnx file, found 2: a\.onnx"):
        find_onnx(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidArgument, match="found 0"):
        find_onnx(empty)


def test_find_onnx_ignores_macos_resource_forks(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"x")
    (tmp_path / "._model.onnx").write_bytes(b"x")
    (tmp_path / "__MACOSX").mkdir()
    (tmp_path / "__MACOSX" / "model.onnx").write_bytes(b"x")
    assert find_onnx(tmp_path) == tmp_path / "model.onnx"
