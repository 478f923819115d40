"""The layout of tests/: what tests share lives in tests/helpers/ (a package), and no
module under tests/ imports a test module (`test_*`) or a conftest.py. Read with ast, so
imports inside functions count too."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
HELPERS = TESTS / "helpers"


def python_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def _package(path: Path, level: int) -> list[str]:
    """The package a relative import of `level` dots in `path` starts from."""
    parts = list(path.relative_to(ROOT).parts[:-1])
    return parts[: len(parts) - level + 1]


def imported_modules(source: str, path: Path) -> Iterator[str]:
    """Every module name an import in `source` (the text of `path`) may load: `from X
    import y` gives X and X.y (y may be a submodule); relative imports are resolved."""
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = _package(path, node.level) if node.level else []
            base = ".".join([*parts, *([node.module] if node.module else [])])
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


# Module names of files under tests/ as a directory on sys.path gives them (`conftest`,
# `test_x`), beside their dotted names (`tests.unit.test_x`).
_TEST_TREE_NAMES = {p.stem for p in python_files()} | {"tests"}


def is_test_or_conftest(module: str) -> bool:
    parts = module.split(".")
    if parts[0] not in _TEST_TREE_NAMES:
        return False
    return any(part == "conftest" or part.startswith("test_") for part in parts)


def forbidden_imports(source: str, path: Path) -> list[str]:
    return sorted({m for m in imported_modules(source, path) if is_test_or_conftest(m)})


def test_no_module_under_tests_imports_a_test_module_or_a_conftest():
    offenders = {}
    for path in python_files():
        found = forbidden_imports(path.read_text(), path)
        if found:
            offenders[str(path.relative_to(ROOT))] = found
    assert offenders == {}, "import these from tests/helpers/ instead"


def test_the_check_finds_imports_of_test_modules_and_conftests():
    path = TESTS / "integration" / "test_example.py"
    source = """
from tests.integration.test_jobs import wait_for
from tests.integration import conftest
from .conftest import make_settings
import tests.fuzz.test_fuzz_auth
def f():
    from test_jobs import step
from tests.helpers.jobs import wait_for
import tests.helpers.job_techniques
"""
    assert forbidden_imports(source, path) == [
        "test_jobs",
        "test_jobs.step",
        "tests.fuzz.test_fuzz_auth",
        "tests.integration.conftest",
        "tests.integration.conftest.make_settings",
        "tests.integration.test_jobs",
        "tests.integration.test_jobs.wait_for",
    ]


def test_every_shared_module_lives_in_tests_helpers():
    misplaced = [
        str(path.relative_to(ROOT))
        for path in python_files()
        if path.name != "__init__.py"
        and path.name != "conftest.py"
        and not path.name.startswith("test_")
        and HELPERS not in path.parents
    ]
    assert misplaced == [], "move shared code into tests/helpers/"


def test_tests_helpers_is_a_package_of_helpers_only():
    assert (HELPERS / "__init__.py").is_file()
    modules = [p for p in HELPERS.rglob("*.py") if "__pycache__" not in p.parts]
    assert not [p.name for p in modules if p.name.startswith("test_") or p.name == "conftest.py"]
