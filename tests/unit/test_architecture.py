"""The shape of the code: floors that import only downward, and no import circle.

Floors, lowest first: `pareto_core` (protocol-free vocabulary), `runtimes`, `compressors`,
then the process (`service`) and its client (`pareto_cli`), then what uses them all
(`bench`, `examples`). Every import counts, including those inside functions and under
TYPE_CHECKING: a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
import functools
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pareto_core", "runtimes", "compressors", "service", "pareto_cli", "bench", "examples")
_EVERYTHING = {"pareto_core", "runtimes", "compressors", "service", "pareto_cli", "pareto"}
# What each top-level package may import of the project (besides itself).
ALLOWED = {
    "pareto_core": set(),
    "runtimes": {"pareto_core"},
    "compressors": {"pareto_core", "runtimes"},
    "service": {"pareto_core", "runtimes", "compressors", "pareto"},
    "pareto_cli": {"pareto_core", "runtimes", "compressors", "service", "pareto"},
    "bench": {
        "pareto_core",
        "runtimes",
        "compressors",
        "service",
        "pareto_cli",
        "pareto",
        "examples",
    },
    "examples": {
        "pareto_core",
        "runtimes",
        "compressors",
        "service",
        "pareto_cli",
        "pareto",
        "bench",
    },
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports (a `from package import module` counts as the
    module; `from module import name` as the module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known and "." in candidate:
                candidate = candidate.rpartition(".")[0]
            if candidate in known and candidate != name:
                targets.add(candidate)
                break
    return targets


def parsed_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


@functools.lru_cache(maxsize=1)
def _graph_json() -> str:
    """`parsed_graph()` computed in a fresh interpreter: in the suite's process, threads
    other tests leave running (torch, Ray) can change the recursion limit while `ast.parse`
    runs, and CPython 3.11 then fails with "AST constructor recursion depth mismatch"."""
    code = (
        "import json; from tests.unit.test_architecture import parsed_graph; "
        "print(json.dumps({k: sorted(v) for k, v in parsed_graph().items()}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout


def _graph() -> dict[str, set[str]]:
    return {name: set(targets) for name, targets in json.loads(_graph_json()).items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_anywhere():
    assert _cycles(_graph()) == []


def test_every_import_runs_down_the_floors():
    upward = defaultdict(list)
    for module, targets in _graph().items():
        floor = module.split(".")[0]
        for target in targets:
            other = target.split(".")[0]
            if other != floor and other not in ALLOWED[floor]:
                upward[module].append(target)
    assert dict(upward) == {}


def test_service_subpackages_form_no_circle():
    """Inside the process too: api, serving, deployments, jobs, ... depend one way."""
    groups: dict[str, set[str]] = defaultdict(set)
    for module, targets in _graph().items():
        if not module.startswith("service."):
            continue
        source = ".".join(module.split(".")[:2])
        for target in targets:
            group = ".".join(target.split(".")[:2])
            if target.startswith("service.") and group != source:
                groups[source].add(group)
    assert _cycles(groups) == []


def test_the_libraries_import_neither_grpc_nor_the_server():
    """Every module of the ground floor, the runtimes and the compressors (and every
    registered technique) imports without grpc, the server package or torch."""
    code = """
import importlib, pkgutil, sys
for top in ("pareto_core", "runtimes", "compressors"):
    for m in pkgutil.walk_packages(importlib.import_module(top).__path__, top + "."):
        importlib.import_module(m.name)
from compressors import registry
registry.names()
print(sorted({m.split(".")[0] for m in sys.modules} & {"grpc", "service", "torch"}))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
