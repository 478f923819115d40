"""Inspect an untrusted torch.export archive (.pt2) without running its code.

Run as a subprocess only: `python -m runtimes.pt2_inspect PATH [MAX_UNPACKED_BYTES]`.
It prints one JSON line to stdout, `{"inputs": [...], "outputs": [...]}` (TensorSpec JSON)
or `{"error": "..."}` with exit status 1.

Why all the checks: `torch.export.load` in torch 2.13 is NOT safe on untrusted files.
  - pickled weights/constants (`use_pickle`) go through `torch.load(weights_only=False)`,
    opaque constants through `pickle.loads`, custom objects through the TorchScript
    unpickler, and sample inputs fall back to `torch.load(weights_only=False)`;
  - `data/aotinductor/` entries make it dlopen compiled native code;
  - every symbolic `expr_str` goes through `sympy.sympify`, which is `eval`;
  - `guards_code` strings are compiled with `exec` when `ExportedProgram.module()` runs.
So the archive must pass a structural allowlist (`check_archive`, torch-free, also run in
the server before spawning this process) and a content check (`check_contents`: no
pickle payloads, symbolic expressions and guards in a small safe grammar, operator
targets plain dotted names), and is then loaded with every unpickling path forced to
`weights_only=True` or refused. Importing this module does not import torch.
"""

from __future__ import annotations

import ast
import contextlib
import json
import re
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAX_ENTRIES = 10_000
_DEFAULT_MAX_UNPACKED = 64 * 1024**3
_ROOT_RE = re.compile(r"[A-Za-z0-9_.-]{1,255}")
_ALLOWED_ENTRY = re.compile(
    r"archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/model\.json|data/sample_inputs/model\.pt"
    r"|data/weights/model_weights_config\.json|data/weights/weight_\d+"
    r"|data/constants/model_constants_config\.json|data/constants/tensor_\d+"
    r"|extra/[A-Za-z0-9_.-]+"
)
_REQUIRED_ENTRIES = (
    "archive_format",
    "models/model.json",
    "data/sample_inputs/model.pt",
    "data/weights/model_weights_config.json",
    "data/constants/model_constants_config.json",
)
_FORBIDDEN_PREFIXES = (
    ("data/aotinductor/", "AOTInductor native code"),
    ("data/constants/custom_obj_", "a pickled TorchScript object"),
    ("data/constants/opaque_obj_", "a pickled Python object"),
    ("data/weights/model.pt", "legacy pickled weights"),
    ("data/constants/model.pt", "legacy pickled constants"),
    ("models/", "a second exported program (only 'model' is supported)"),
)


class ArchiveRejected(ValueError):
    """The archive is not an acceptable torch.export archive; the message says why."""


# -- structure (torch-free) ----------------------------------------------------------


def _archive_root(names: list[str]) -> str:
    root = names[0].split("/", 1)[0] if names else ""
    if not _ROOT_RE.fullmatch(root) or root in (".", ".."):
        raise ArchiveRejected(f"entry {names[0] if names else ''!r} has no valid root folder")
    return root


def _check_entry(rel: str, raw: str) -> None:
    if _ALLOWED_ENTRY.fullmatch(rel):
        return
    for prefix, what in _FORBIDDEN_PREFIXES:
        if rel.startswith(prefix):
            raise ArchiveRejected(f"entry {raw!r} holds {what}, which is not accepted")
    raise ArchiveRejected(f"entry {raw!r} is not part of a torch.export archive")


def check_archive(path: Path, max_unpacked_bytes: int = _DEFAULT_MAX_UNPACKED) -> None:
    """Cheap structural check without torch: a zip holding only the entries that
    `torch.export.save` writes for one program named 'model', and no pickle payloads."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            _check_infos(infos, max_unpacked_bytes)
            root = _archive_root([i.filename for i in infos])
            fmt = zf.read(f"{root}/archive_format")[:16]
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as e:
        raise ArchiveRejected(f"not a torch.export archive (a zip file): {e}") from e
    if fmt != b"pt2":
        raise ArchiveRejected(f"archive_format is {fmt!r}, expected b'pt2'")


def _check_infos(infos: list[zipfile.ZipInfo], max_unpacked_bytes: int) -> None:
    if not infos or len(infos) > MAX_ENTRIES:
        raise ArchiveRejected(f"archive has {len(infos)} entries, expected 1 to {MAX_ENTRIES}")
    root = _archive_root([i.filename for i in infos])
    seen: set[str] = set()
    total = 0
    for info in infos:
        raw = info.filename
        if not raw.startswith(root + "/") or raw in seen or info.flag_bits & 0x1:
            raise ArchiveRejected(f"entry {raw!r} is outside {root!r}, repeated or encrypted")
        seen.add(raw)
        _check_entry(raw[len(root) + 1 :], raw)
        total += info.file_size
        if total > max_unpacked_bytes:
            raise ArchiveRejected(f"archive unpacks to more than {max_unpacked_bytes} bytes")
    missing = [e for e in _REQUIRED_ENTRIES if f"{root}/{e}" not in seen]
    if missing:
        raise ArchiveRejected(f"archive lacks {', '.join(missing)}")


# -- contents (torch-free) -----------------------------------------------------------

# Names torch's serializer writes in `expr_str` (sympy srepr) and the torch sympy functions
# its deserializer knows; anything else is refused before sympify (= eval) sees it.
_SYMPY_CALLABLES = frozenset(
    {
        "Symbol",
        "Integer",
        "Rational",
        "Mul",
        "Add",
        "Pow",
        "Max",
        "Min",
        "Mod",
        "Abs",
        "floor",
        "ceiling",
        "Eq",
        "Ne",
        "Lt",
        "Le",
        "Gt",
        "Ge",
        "StrictLessThan",
        "StrictGreaterThan",
        "LessThan",
        "GreaterThan",
        "Equality",
        "Unequality",
        "And",
        "Or",
        "Not",
        "Piecewise",
        "ExprCondPair",
        "True",
        "False",
        "true",
        "false",
        "oo",
        "zoo",
        "nan",
        "Infinity",
        "NegativeInfinity",
        "FloorDiv",
        "ModularIndexing",
        "Where",
        "PythonMod",
        "CleanDiv",
        "CeilToInt",
        "FloorToInt",
        "CeilDiv",
        "LShift",
        "RShift",
        "PowByNatural",
        "FloatPow",
        "FloatTrueDiv",
        "IntTrueDiv",
        "IsNonOverlappingAndDenseIndicator",
        "TruncToFloat",
        "TruncToInt",
        "RoundToInt",
        "RoundDecimal",
        "ToFloat",
        "Identity",
    }
)
_EXPR_TOKEN = re.compile(
    r"(?P<space>\s+)|(?P<str>'[A-Za-z0-9_]*')|(?P<num>\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|//|==|!=|<=|>=|[-+*/%(),<>=])"
)
_SYMBOL_NAME = re.compile(r"[a-z]+\d+")
_KWARG_NAME = re.compile(r"[a-z][a-z_]*")


def check_sym_expr(expr: str) -> None:
    """Allow only what torch writes for symbolic shapes (sympy srepr or infix over sizes
    like s0): known sympy/torch function names, integers, plain identifiers in quotes."""
    if len(expr) > 10_000:
        raise ArchiveRejected(f"symbolic expression of {len(expr)} characters is too long")
    tokens = _tokens(expr)
    for i, (kind, text) in enumerate(tokens):
        if kind != "name":
            continue
        is_kwarg = i + 1 < len(tokens) and tokens[i + 1] == ("op", "=")
        ok = (
            _KWARG_NAME.fullmatch(text)
            if is_kwarg
            else text in _SYMPY_CALLABLES or _SYMBOL_NAME.fullmatch(text)
        )
        if not ok:
            raise ArchiveRejected(f"symbolic expression {expr[:200]!r} uses {text!r}")


def _tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        m = _EXPR_TOKEN.match(expr, pos)
        if m is None:
            raise ArchiveRejected(f"symbolic expression {expr[:200]!r} has {expr[pos]!r}")
        if m.lastgroup != "space":
            out.append((m.lastgroup or "", m.group()))
        pos = m.end()
    return out


_GUARD_NODES = (
    ast.Expression,
    ast.Compare,
    ast.BoolOp,
    ast.UnaryOp,
    ast.BinOp,
    ast.Constant,
    ast.Subscript,
    ast.Name,
    ast.Call,
    ast.Attribute,
    ast.Load,
    ast.And,
    ast.Or,
    ast.Not,
    ast.USub,
    ast.UAdd,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.FloorDiv,
    ast.Mod,
    ast.Pow,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
)
_GUARD_NAMES = frozenset({"L", "math", "inf", "min", "max", "abs", "int", "float", "round"})
_GUARD_ATTRS = frozenset({"size", "stride", "storage_offset", "dim", "numel"})
_MATH_ATTRS = frozenset({"floor", "ceil", "trunc", "sqrt"})
_SAFE_STR = re.compile(r"[A-Za-z0-9_]*")


def check_guard(code: str) -> None:
    """Allow only shape guards like "L['x'].size()[0] <= 64": torch turns these into
    Python source and exec()s it when `ExportedProgram.module()` is called."""
    try:
        tree = ast.parse(code, mode="eval")
    except SyntaxError as e:
        raise ArchiveRejected(f"guard {code[:200]!r} is not an expression: {e.msg}") from e
    for node in ast.walk(tree):
        if not _guard_node_ok(node):
            raise ArchiveRejected(f"guard {code[:200]!r} uses {ast.dump(node)[:80]}")


def _guard_node_ok(node: ast.AST) -> bool:
    if not isinstance(node, _GUARD_NODES):
        return False
    if isinstance(node, ast.Name):
        return node.id in _GUARD_NAMES
    if isinstance(node, ast.Attribute):
        if isinstance(node.value, ast.Name) and node.value.id == "math":
            return node.attr in _MATH_ATTRS
        return node.attr in _GUARD_ATTRS
    if isinstance(node, ast.Call):
        return not node.keywords and isinstance(node.func, ast.Name | ast.Attribute)
    if isinstance(node, ast.Constant):
        v = node.value
        return isinstance(v, int | float) or (isinstance(v, str) and bool(_SAFE_STR.fullmatch(v)))
    return True


_TARGET_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")


def check_program_json(doc: Any) -> None:
    """Walk models/model.json: symbolic expressions, guards and operator targets."""
    if not isinstance(doc, dict):
        raise ArchiveRejected("models/model.json is not a JSON object")
    for guard in doc.get("guards_code") or []:
        check_guard(str(guard))
    for node in _walk_dicts(doc):
        if isinstance(node.get("expr_str"), str):
            check_sym_expr(node["expr_str"])
        if "target" in node and "inputs" in node and "outputs" in node:
            target = node["target"]
            if not isinstance(target, str) or not _TARGET_RE.fullmatch(target):
                raise ArchiveRejected(f"graph node target {str(target)[:200]!r} is not accepted")


def _walk_dicts(value: Any) -> Iterator[dict[str, Any]]:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            yield v
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def check_payload_config(doc: Any, entry: str, prefix: str) -> None:
    """Every weight/constant must be raw bytes (`use_pickle` false) in a `prefix<N>` file."""
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        raise ArchiveRejected(f"{entry} has no 'config' object")
    for fqn, meta in config.items():
        if not isinstance(meta, dict) or meta.get("use_pickle") is not False:
            raise ArchiveRejected(f"{entry}: {fqn!r} is pickled; only raw tensors are accepted")
        if not re.fullmatch(re.escape(prefix) + r"\d+", str(meta.get("path_name"))):
            raise ArchiveRejected(f"{entry}: {fqn!r} has path {meta.get('path_name')!r}")


def check_contents(path: Path) -> None:
    with zipfile.ZipFile(path) as zf:
        root = _archive_root(zf.namelist())

        def load(rel: str) -> Any:
            try:
                return json.loads(zf.read(f"{root}/{rel}"))
            except (ValueError, RecursionError) as e:
                raise ArchiveRejected(f"{rel} is not valid JSON: {e}") from e

        check_payload_config(load("data/weights/model_weights_config.json"), "weights", "weight_")
        check_payload_config(
            load("data/constants/model_constants_config.json"), "constants", "tensor_"
        )
        check_program_json(load("models/model.json"))


# -- loading and signature (torch) ---------------------------------------------------

_TORCH_TO_KSERVE = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}


@contextlib.contextmanager
def _locked_down() -> Iterator[None]:
    """While loading: `torch.load` is forced to weights_only=True, the raw pickle paths
    refuse, and every string reaching `sympy.sympify` (eval) is checked again, on the
    bytes torch itself read (not just on what Python's zipfile saw in `check_contents`)."""
    import types

    import sympy
    import torch
    from torch.export.pt2_archive import _package

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise ArchiveRejected("the archive asks to unpickle an arbitrary object")

    real_load, real_sympify = torch.load, sympy.sympify

    def weights_only_load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return real_load(*args, **kwargs)

    def checked_sympify(a: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(a, str):
            check_sym_expr(a)
        return real_sympify(a, *args, **kwargs)

    patches = [
        (torch, "load", weights_only_load),
        (_package, "pickle", types.SimpleNamespace(loads=refuse, load=refuse)),
        (torch._C, "_pickle_load_obj", refuse),
        (sympy, "sympify", checked_sympify),
    ]
    saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in patches]
    try:
        for obj, attr, value in patches:
            setattr(obj, attr, value)
        yield
    finally:
        for obj, attr, value in saved:
            setattr(obj, attr, value)


def load_restricted(path: Path) -> Any:
    """Load a stored .pt2 that passed `check_archive`/`check_contents`. Use this, never
    `torch.export.load`, wherever Pareto loads a user's archive. `load_pt2` is called
    directly so torch's legacy-format fallback, which unpickles, is never taken; the
    guards that `ExportedProgram.module()` will exec are checked as torch loaded them."""
    from torch.export.pt2_archive._package import load_pt2

    with _locked_down(), open(path, "rb") as f:
        contents = load_pt2(f)
    if set(contents.exported_programs) != {"model"} or contents.aoti_runners:
        raise ArchiveRejected("archive must hold exactly one exported program, 'model'")
    ep = contents.exported_programs["model"]
    for guard in getattr(ep, "_guards_code", None) or []:
        check_guard(guard)
    return ep


def _spec(name: str, val: Any, kind: str) -> dict[str, Any]:
    import torch

    if not isinstance(val, torch.Tensor):
        raise ArchiveRejected(
            f"{kind} {name!r} is a {type(val).__name__}, not a tensor; only tensor "
            f"{kind}s can be served"
        )
    dtype = str(val.dtype).removeprefix("torch.")
    if dtype not in _TORCH_TO_KSERVE:
        raise ArchiveRejected(f"{kind} {name!r} has dtype {dtype}, which cannot be served")
    shape = [d if isinstance(d, int) else -1 for d in val.shape]
    return {"name": name, "datatype": _TORCH_TO_KSERVE[dtype], "shape": shape}


def signature_json(ep: Any) -> dict[str, list[dict[str, Any]]]:
    """User inputs and outputs of the exported program, from the fake-tensor metadata."""
    from torch.export.graph_signature import InputKind, OutputKind

    nodes = {n.name: n for n in ep.graph.nodes}
    inputs = []
    for spec in ep.graph_signature.input_specs:
        if spec.kind == InputKind.USER_INPUT:
            node = nodes.get(getattr(spec.arg, "name", ""))
            inputs.append(_spec(str(spec.arg.name), node and node.meta.get("val"), "input"))
    out_node = next(n for n in reversed(ep.graph.nodes) if n.op == "output")
    outputs = []
    for spec, arg in zip(ep.graph_signature.output_specs, out_node.args[0], strict=True):
        if spec.kind == OutputKind.USER_OUTPUT:
            val = arg.meta.get("val") if hasattr(arg, "meta") else arg
            outputs.append(_spec(str(getattr(spec.arg, "name", arg)), val, "output"))
    names = [t["name"] for t in inputs + outputs]
    if len(set(names)) != len(names):
        raise ArchiveRejected(f"input/output names are not unique: {names}")
    return {"inputs": inputs, "outputs": outputs}


def inspect(path: Path, max_unpacked_bytes: int = _DEFAULT_MAX_UNPACKED) -> dict[str, Any]:
    check_archive(path, max_unpacked_bytes)
    check_contents(path)
    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the one JSON line
        return signature_json(load_restricted(path))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        print("usage: python -m runtimes.pt2_inspect PATH [MAX_UNPACKED_BYTES]", file=sys.stderr)
        return 2
    limit = int(args[1]) if len(args) == 2 else _DEFAULT_MAX_UNPACKED
    try:
        result: dict[str, Any] = inspect(Path(args[0]), limit)
    except ArchiveRejected as e:
        result = {"error": str(e)}
    except Exception as e:  # torch's own errors on a damaged or unsupported archive
        result = {"error": f"torch could not load it: {type(e).__name__}: {e}"[:2000]}
    print(json.dumps(result), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
