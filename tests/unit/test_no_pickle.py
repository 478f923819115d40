"""No pickle anywhere: the code never unpickles, and only the restricted loader reads .pt2.

Every .py file under the product's code directories is parsed, and its code (not its
comments or docstrings, which may explain why pickle is refused) is checked for:
- importing pickle or a pickle-based serializer (pickle, dill, cloudpickle, joblib, ...),
  directly or via `__import__` / `importlib.import_module`, or naming `pickle`;
- `torch.load(...)` without `weights_only=True`, or `torch.load` taken as a value;
- `allow_pickle=` anything but a literal False (numpy's loaders);
- `torch.export.load` or torch's .pt2 archive internals outside runtimes/pt2_inspect.py,
  the one module that loads .pt2 archives, under its own checks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CODE_DIRS = (
    "pareto_core",
    "service",
    "compressors",
    "runtimes",
    "pareto_cli",
    "examples",
    "bench",
    "tools",
)
PT2_LOADER = "runtimes/pt2_inspect.py"
BANNED_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "jsonpickle", "shelve"}
BANNED_MODULES |= {"joblib"}
BANNED_NAMES = {"pickle", "_pickle", "read_pickle", "to_pickle"}

# (file, source line stripped) -> why that line is fine. Kept tiny; a stale entry fails.
ALLOWED = {
    (PT2_LOADER, "real_load, real_sympify = torch.load, sympy.sympify"): (
        "the restricted .pt2 loader keeps torch.load only to call it with weights_only=True "
        "forced (weights_only_load) while torch reads an archive"
    ),
}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _is_literal(node: ast.AST | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _banned_module(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in BANNED_MODULES)


def findings(source: str, path: str) -> list[tuple[int, str]]:
    """(line, problem) for each forbidden construct in `source` (a file at `path`)."""
    tree = ast.parse(source)
    problems: list[tuple[int, str]] = []
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    may_load_pt2 = path == PT2_LOADER
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            problems += [(line, f"imports {a.name}") for a in node.names if _banned_module(a.name)]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = {a.name for a in node.names}
            if _banned_module(module):
                problems.append((line, f"imports from {module}"))
            if not may_load_pt2 and (
                "pt2_archive" in module or (module == "torch.export" and "load" in names)
            ):
                problems.append((line, f".pt2 loading ({module}) outside {PT2_LOADER}"))
            if module == "torch" and "load" in names:
                problems.append((line, "imports torch.load by name"))
        elif isinstance(node, ast.Name | ast.Attribute):
            name = node.id if isinstance(node, ast.Name) else node.attr
            dotted = _dotted(node)
            if name in BANNED_NAMES:
                problems.append((line, f"uses {dotted or name}"))
            elif dotted == "torch.export.load" and not may_load_pt2:
                problems.append((line, f"torch.export.load outside {PT2_LOADER}"))
            elif dotted == "torch.load" and id(node) not in called:
                problems.append((line, "takes torch.load as a value"))
        elif isinstance(node, ast.Call):
            problems += _call_problems(node)
    return problems


def _call_problems(node: ast.Call) -> list[tuple[int, str]]:
    problems = []
    keywords = {k.arg: k.value for k in node.keywords}
    func = _dotted(node.func)
    if func == "torch.load" and not _is_literal(keywords.get("weights_only"), True):
        problems.append((node.lineno, "torch.load without weights_only=True"))
    if "allow_pickle" in keywords and not _is_literal(keywords["allow_pickle"], False):
        problems.append((node.lineno, "allow_pickle is not literally False"))
    if func in ("__import__", "importlib.import_module") and node.args:
        first = node.args[0]
        if isinstance(first, ast.Constant) and _banned_module(str(first.value)):
            problems.append((node.lineno, f"imports {first.value} dynamically"))
    return problems


def _code_files() -> list[Path]:
    return sorted(p for d in CODE_DIRS if (ROOT / d).is_dir() for p in (ROOT / d).rglob("*.py"))


def test_code_has_no_pickle_and_no_unsafe_loads():
    unexplained, used = [], set()
    for path in _code_files():
        rel = path.relative_to(ROOT).as_posix()
        lines = path.read_text(encoding="utf-8").splitlines()
        for line, problem in findings("\n".join(lines), rel):
            key = (rel, lines[line - 1].strip())
            if key in ALLOWED:
                used.add(key)
            else:
                unexplained.append(f"{rel}:{line}: {problem}: {key[1]}")
    assert not unexplained, "\n".join(unexplained)
    assert used == set(ALLOWED), f"stale allowlist entries: {set(ALLOWED) - used}"
    assert len(_code_files()) > 50  # the scan saw the code


@pytest.mark.parametrize(
    "snippet",
    [
        "import pickle",
        "import cloudpickle as cp",
        "from pickle import loads",
        "from joblib import load",
        "x = __import__('pickle')",
        "import importlib\nimportlib.import_module('dill')",
        "import torch\ntorch.load('m.pt')",
        "import torch\ntorch.load('m.pt', weights_only=False)",
        "import torch\nf = torch.load",
        "from torch import load",
        "import numpy as np\nnp.load('a.npz', allow_pickle=True)",
        "import numpy as np\nflag = True\nnp.load('a.npz', allow_pickle=flag)",
        "import torch\ntorch.export.load('m.pt2')",
        "from torch.export import load",
        "from torch.export.pt2_archive._package import load_pt2",
        "import pandas as pd\npd.read_pickle('x')",
    ],
)
def test_checker_catches(snippet):
    assert findings(snippet, "service/x.py")


@pytest.mark.parametrize(
    "snippet",
    [
        '"""Never unpickle: no pickle, no torch.load(weights_only=False)."""',
        "# import pickle would be wrong",
        "import torch\ntorch.load('m.pt', weights_only=True, map_location='cpu')",
        "import numpy as np\nnp.load('a.npz', allow_pickle=False)",
        "PICKLE_REFUSED = 'pickled objects are refused'",
    ],
)
def test_checker_allows(snippet):
    assert findings(snippet, "service/x.py") == []
