"""Shared fixtures: the two real demo models, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.models import BuiltModel, build_digits_cnn, export_minilm


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def digits_model(models_dir: Path) -> BuiltModel:
    return build_digits_cnn(models_dir / "digits_cnn.onnx", epochs=5)


@pytest.fixture(scope="session")
def minilm_model(models_dir: Path) -> BuiltModel:
    return export_minilm(models_dir / "minilm.onnx")
