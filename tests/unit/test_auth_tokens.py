"""The tokens file format, its reload, and the method -> scope table."""

from __future__ import annotations

import hashlib
import importlib
import os
import pkgutil
from pathlib import Path

import pytest
from tritonclient.grpc import service_pb2 as kserve_pb

import pareto.v1
from service.auth import scopes, tokens
from service.auth.interceptor import bearer_token
from service.auth.scopes import ADMIN, INFER, OPEN, READ, allows, required_scope
from service.auth.tokens import TokenStore, parse_tokens
from service.settings import SettingsError

GOOD = "a" * 16


def test_parses_names_scopes_and_comments():
    text = f"# comment\n\nci read,infer {GOOD}  # trailing\nops admin {'b' * 20}#x\n"
    entries = parse_tokens(text, "f")
    assert [(p.name, sorted(p.scopes)) for _, p in entries] == [
        ("ci", ["infer", "read"]),
        ("ops", ["admin"]),
    ]
    store_text = dict((p.name, d) for d, p in entries)
    assert store_text["ops"] == hashlib.sha256(("b" * 20 + "#x").encode()).digest()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (f"ci read {GOOD} extra", "expected 3 fields"),
        ("ci read", "expected 3 fields"),
        (f"c/i read {GOOD}", "name must match"),
        (f"ci write {GOOD}", "subset of read, infer, admin"),
        (f"ci read, {GOOD}", "subset of read, infer, admin"),
        ("ci read short", "at least 16"),
        (f"ci read {GOOD}\nci admin {'b' * 16}", "appears twice"),
        (f"ci read {GOOD}\nops admin {GOOD}", "also another name's token"),
        ("# nothing\n", "no tokens"),
    ],
)
def test_bad_files_name_the_setting_and_line_never_the_token(text, problem):
    with pytest.raises(SettingsError) as err:
        parse_tokens(text, "tokens.txt")
    message = str(err.value)
    assert problem in message and "PARETO_AUTH_TOKENS_FILE (tokens.txt)" in message
    assert GOOD not in message and "b" * 16 not in message


def test_authenticate_and_reload(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(tokens, "RELOAD_CHECK_S", 0.0)
    path = tmp_path / "tokens"
    path.write_text(f"ci read {GOOD}\n")
    store = TokenStore(path)
    assert store.authenticate(GOOD).name == "ci"
    assert store.authenticate("x" * 16) is None
    new = tmp_path / "new"
    new.write_text(f"ops admin {'c' * 16}\n")
    os.replace(new, path)  # how a rotated Kubernetes Secret appears
    assert store.authenticate(GOOD) is None
    assert store.authenticate("c" * 16).scopes == {"admin"}
    broken = tmp_path / "broken"
    broken.write_text("garbage\n")
    os.replace(broken, path)
    assert store.authenticate("c" * 16).name == "ops"  # a broken file keeps the old tokens


@pytest.mark.parametrize(
    ("metadata", "token"),
    [
        ([("authorization", "Bearer abc")], "abc"),
        ([("authorization", "bearer  abc ")], "abc"),
        ([("x", "y"), ("authorization", "Basic abc")], None),
        ([], None),
        (None, None),
    ],
)
def test_bearer_token(metadata, token):
    assert bearer_token(metadata) == token


def test_scopes_grant():
    assert allows(frozenset({ADMIN}), READ) and allows(frozenset({ADMIN}), INFER)
    assert not allows(frozenset({READ}), INFER) and not allows(frozenset({INFER}), READ)
    assert not allows(frozenset({READ, INFER}), ADMIN)
    assert allows(frozenset(), OPEN)


def test_every_served_method_has_an_explicit_scope():
    """A pareto.v1 service added later must be classified in service/auth/scopes.py."""
    modules = [importlib.import_module(f"pareto.v1.{m.name}") for m in _pb2_modules()]
    served = {
        f"/{service.full_name}/{method.name}"
        for module in [*modules, kserve_pb]
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert any("/pareto.v1.ModelService/" in m for m in served)
    unclassified = {m for m in served if m not in scopes.METHOD_SCOPES}
    # Only Triton extensions Pareto does not implement stay unlisted (deny by default).
    assert all(
        m.startswith("/inference.") and ("SharedMemory" in m or m.rsplit("/", 1)[1] in _TRITON)
        for m in unclassified
    ), sorted(unclassified)
    assert required_scope("/pareto.v1.Whatever/New") == ADMIN
    assert required_scope("/grpc.health.v1.Health/Check") == OPEN


_TRITON = {"ModelStatistics", "ModelConfig", "TraceSetting", "LogSettings"}


def _pb2_modules() -> list[pkgutil.ModuleInfo]:
    return [m for m in pkgutil.iter_modules(pareto.v1.__path__) if m.name.endswith("_pb2")]
