"""Shared fixtures: the two real demo models, built once per test session; a real
PostgreSQL server (tests/helpers/postgres_server.py) with a fresh database per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.models import BuiltModel, build_digits_cnn, export_minilm, export_minilm_tokens
from tests.helpers.postgres_server import PostgresServer, running_postgres


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def digits_model(models_dir: Path) -> BuiltModel:
    return build_digits_cnn(models_dir / "digits_cnn.onnx", epochs=5)


@pytest.fixture(scope="session")
def minilm_model(models_dir: Path) -> BuiltModel:
    return export_minilm(models_dir / "minilm.onnx")


@pytest.fixture(scope="session")
def minilm_tokens_model(models_dir: Path) -> BuiltModel:
    """MiniLM as a standard Hugging Face export: `last_hidden_state` [batch, seq, 384]."""
    return export_minilm_tokens(models_dir / "minilm_tokens.onnx")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    yield from running_postgres()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty database on the session's server (dropped afterwards)."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)
