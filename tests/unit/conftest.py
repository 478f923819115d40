"""Fixtures for the store and upload tests: tiny real ONNX / torch.export models and a
store (blob store + SQLite repository + uploader) in a temporary directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.catalog.uploads import Uploader
from service.store.blobs import BlobStore
from service.store.sqlite_repository import SqliteRepository


def build_onnx_model(batch: str | int = "batch"):
    """Y = MatMul(X, W) + B with W, B initializers; X is [batch, 3] float32."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(3, 2), "W")
    b = numpy_helper.from_array(np.ones(2, dtype=np.float32), "B")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["X", "W"], ["XW"]),
            helper.make_node("Add", ["XW", "B"], ["Y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [batch, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [batch, 2])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture
def onnx_model_factory() -> Callable[..., object]:
    return build_onnx_model


@pytest.fixture
def onnx_bytes() -> bytes:
    return build_onnx_model().SerializeToString()


@pytest.fixture(scope="session")
def pt2_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A torch.export archive of a tiny Linear model with a dynamic batch dim."""
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.linear(x))

    batch = torch.export.Dim("batch", max=1024)
    ep = torch.export.export(Tiny(), (torch.randn(2, 4),), dynamic_shapes={"x": {0: batch}})
    path = tmp_path_factory.mktemp("pt2") / "tiny.pt2"
    torch.export.save(ep, path)
    return path.read_bytes()


@dataclass
class Store:
    root: Path
    blobs: BlobStore
    repo: SqliteRepository
    uploader: Uploader

    def blob_files(self) -> list[Path]:
        return sorted(p for p in (self.root / "blobs").rglob("*") if p.is_file())

    def tmp_entries(self) -> list[Path]:
        return sorted((self.root / "tmp").iterdir())

    def assert_no_trace(self, expected_blobs: int = 0, expected_rows: int = 0) -> None:
        """Nothing left in tmp/, and only the blobs/rows that were there before."""
        assert self.tmp_entries() == []
        assert len(self.blob_files()) == expected_blobs
        assert len(self.repo.list_models()) == expected_rows


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    root = tmp_path / "data"
    blobs = BlobStore(root)
    repo = SqliteRepository(root / "metadata.db")
    yield Store(root, blobs, repo, Uploader(blobs, repo, max_model_bytes=10 * 1024 * 1024))
    repo.close()
