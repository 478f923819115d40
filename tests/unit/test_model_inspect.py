"""Model validation and signatures: real ONNX models, real bundles, real .pt2 archives."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from pareto_core.errors import InvalidArgument
from pareto_core.tensors import TensorSpec
from runtimes import pt2_inspect
from service.catalog.model_inspect import inspect_model
from service.catalog.uploads import UploadRequest

LIMIT = 64 * 1024 * 1024


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def external_data_bundle(tmp_path: Path, model: onnx.ModelProto, location: str) -> Path:
    """A .tar.gz holding model/model.onnx whose initializers live in `location`."""
    src = tmp_path / "src"
    (src / "model").mkdir(parents=True)
    onnx.save_model(
        model,
        src / "model" / "model.onnx",
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    saved = onnx.load(src / "model" / "model.onnx", load_external_data=False)
    for tensor in saved.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save_model(saved, src / "model" / "model.onnx")
    archive = tmp_path / "bundle.bin"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src / "model", arcname="model")
    return archive


# -- onnx ------------------------------------------------------------------------------


def test_onnx_signature_excludes_initializers(tmp_path, onnx_bytes):
    sig = inspect_model(write(tmp_path / "m", onnx_bytes), "onnx", tmp_path / "w", LIMIT)
    assert sig.inputs == (TensorSpec("X", "FP32", (-1, 3)),)
    assert sig.outputs == (TensorSpec("Y", "FP32", (-1, 2)),)


def test_onnx_datatypes_map_to_kserve(tmp_path):
    kinds = {
        "f16": TensorProto.FLOAT16,
        "f64": TensorProto.DOUBLE,
        "i64": TensorProto.INT64,
        "i32": TensorProto.INT32,
        "i8": TensorProto.INT8,
        "u8": TensorProto.UINT8,
        "b": TensorProto.BOOL,
    }
    graph = helper.make_graph(
        [helper.make_node("Identity", [n], [n + "_out"]) for n in kinds],
        "types",
        [helper.make_tensor_value_info(n, t, [2, None]) for n, t in kinds.items()],
        [helper.make_tensor_value_info(n + "_out", t, [2, "d"]) for n, t in kinds.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = write(tmp_path / "m", model.SerializeToString())
    sig = inspect_model(path, "onnx", tmp_path / "w", LIMIT)
    assert [(t.datatype, t.shape) for t in sig.inputs] == [
        (d, (2, -1)) for d in ("FP16", "FP64", "INT64", "INT32", "INT8", "UINT8", "BOOL")
    ]
    assert sig.outputs[0] == TensorSpec("f16_out", "FP16", (2, -1))


def test_onnx_string_input_is_refused(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["s"], ["o"])],
        "strings",
        [helper.make_tensor_value_info("s", TensorProto.STRING, [1])],
        [helper.make_tensor_value_info("o", TensorProto.STRING, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with pytest.raises(InvalidArgument, match="input 's' has element type STRING"):
        inspect_model(write(tmp_path / "m", model.SerializeToString()), "onnx", tmp_path, LIMIT)


@pytest.mark.parametrize("garbage", [b"\x00garbage\xff" * 100, b"PK\x03\x04 not a model"])
def test_garbage_is_not_a_valid_onnx_model(tmp_path, garbage):
    with pytest.raises(InvalidArgument, match="uploaded file is not a valid ONNX model: "):
        inspect_model(write(tmp_path / "m", garbage), "onnx", tmp_path / "w", LIMIT)


def test_plain_onnx_with_external_data_is_refused(tmp_path, onnx_model_factory):
    onnx.save_model(
        onnx_model_factory(),
        tmp_path / "m.onnx",
        save_as_external_data=True,
        location="w.bin",
        size_threshold=0,
    )
    with pytest.raises(InvalidArgument, match=r"must be self-contained.*onnx_bundle"):
        inspect_model(tmp_path / "m.onnx", "onnx", tmp_path / "w", LIMIT)


def test_unknown_format_lists_accepted(tmp_path):
    with pytest.raises(InvalidArgument, match="accepted: onnx, onnx_bundle, torch_export"):
        inspect_model(write(tmp_path / "m", b"x"), "savedmodel", tmp_path / "w", LIMIT)


# -- onnx_bundle -----------------------------------------------------------------------


def test_bundle_with_external_data(tmp_path, onnx_model_factory):
    archive = external_data_bundle(tmp_path, onnx_model_factory(), "weights.bin")
    sig = inspect_model(archive, "onnx_bundle", tmp_path / "w", LIMIT)
    assert sig.inputs == (TensorSpec("X", "FP32", (-1, 3)),)
    assert (tmp_path / "w" / "model" / "weights.bin").is_file()


@pytest.mark.parametrize(
    ("location", "why"),
    [
        ("../weights.bin", r"'\.\.' component"),
        ("/etc/passwd", "not a relative path"),
        ("missing.bin", "not a file in the bundle"),
    ],
)
def test_bundle_external_data_confined(tmp_path, onnx_model_factory, location, why):
    archive = external_data_bundle(tmp_path, onnx_model_factory(), location)
    with pytest.raises(InvalidArgument, match=f"tensor 'W' stores its data in .*{why}"):
        inspect_model(archive, "onnx_bundle", tmp_path / "w", LIMIT)


def test_bundle_external_data_past_end_of_file(tmp_path, onnx_model_factory):
    archive = external_data_bundle(tmp_path, onnx_model_factory(), "weights.bin")
    with tarfile.open(archive) as tf:
        tf.extractall(tmp_path / "x", filter="data")
    (tmp_path / "x" / "model" / "weights.bin").write_bytes(b"\0" * 4)  # truncated
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tmp_path / "x" / "model", arcname="model")
    with pytest.raises(InvalidArgument, match="but that file has 4 bytes"):
        inspect_model(archive, "onnx_bundle", tmp_path / "w", LIMIT)


def test_bundle_with_two_models_is_refused(tmp_path, onnx_bytes):
    archive = tmp_path / "b.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.onnx", onnx_bytes)
        zf.writestr("b.onnx", onnx_bytes)
    with pytest.raises(InvalidArgument, match=r"exactly one \.onnx file, found 2"):
        inspect_model(archive, "onnx_bundle", tmp_path / "w", LIMIT)


def test_bundle_member_that_is_not_onnx(tmp_path):
    archive = tmp_path / "b.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("dir/model.onnx", b"\x00garbage" * 50)
    with pytest.raises(InvalidArgument, match=r"bundle member 'dir/model\.onnx' is not a valid"):
        inspect_model(archive, "onnx_bundle", tmp_path / "w", LIMIT)


# -- torch_export ----------------------------------------------------------------------


def test_pt2_signature_via_subprocess(tmp_path, pt2_bytes):
    sig = inspect_model(write(tmp_path / "m", pt2_bytes), "torch_export", tmp_path / "w", LIMIT)
    assert sig.inputs == (TensorSpec("x", "FP32", (-1, 4)),)
    assert len(sig.outputs) == 1 and sig.outputs[0].datatype == "FP32"
    assert sig.outputs[0].shape == (-1, 3)


def rewrite_pt2(src: bytes, path: Path, edit) -> Path:
    """Copy a .pt2 zip entry by entry; `edit(rel_name, data)` returns new data, None to
    drop the entry, or a dict of extra entries to add under key '+'."""
    path.with_suffix(".src").write_bytes(src)
    with zipfile.ZipFile(path.with_suffix(".src")) as zin, zipfile.ZipFile(path, "w") as zout:
        root = zin.namelist()[0].split("/")[0]
        for name in zin.namelist():
            data = edit(name[len(root) + 1 :], zin.read(name))
            if data is not None:
                zout.writestr(name, data)
        for rel, data in (edit("+", b"") or {}).items():
            zout.writestr(f"{root}/{rel}", data)
    return path


def edit_json(rel_target: str, change):
    def edit(rel: str, data: bytes):
        if rel == "+":
            return None
        if rel != rel_target:
            return data
        doc = json.loads(data)
        change(doc)
        return json.dumps(doc).encode()

    return edit


def test_pt2_rewritten_unchanged_still_loads(tmp_path, pt2_bytes):
    """The tampering helper alone does not make an archive fail."""
    path = rewrite_pt2(pt2_bytes, tmp_path / "m", lambda rel, data: None if rel == "+" else data)
    sig = inspect_model(path, "torch_export", tmp_path / "w", LIMIT)
    assert sig.inputs == (TensorSpec("x", "FP32", (-1, 4)),)


def test_pt2_with_aotinductor_code_is_refused(tmp_path, pt2_bytes):
    def edit(rel, data):
        return {"data/aotinductor/model/evil.so": b"\x7fELF"} if rel == "+" else data

    path = rewrite_pt2(pt2_bytes, tmp_path / "m", edit)
    with pytest.raises(InvalidArgument, match="AOTInductor native code"):
        inspect_model(path, "torch_export", tmp_path / "w", LIMIT)


def test_pt2_with_pickled_weight_is_refused(tmp_path, pt2_bytes):
    def pickle_first(doc):
        next(iter(doc["config"].values()))["use_pickle"] = True

    edit = edit_json("data/weights/model_weights_config.json", pickle_first)
    path = rewrite_pt2(pt2_bytes, tmp_path / "m", edit)
    with pytest.raises(InvalidArgument, match="is pickled; only raw tensors"):
        inspect_model(path, "torch_export", tmp_path / "w", LIMIT)


def test_pt2_with_code_in_a_symbolic_expression_is_refused(tmp_path, pt2_bytes):
    marker = tmp_path / "pwned"

    def inject(doc):
        text = json.dumps(doc).replace(
            "Symbol(", f"__import__('os').system('touch {marker}') or Symbol(", 1
        )
        doc.clear()
        doc.update(json.loads(text))

    path = rewrite_pt2(pt2_bytes, tmp_path / "m", edit_json("models/model.json", inject))
    with pytest.raises(InvalidArgument, match="symbolic expression"):
        inspect_model(path, "torch_export", tmp_path / "w", LIMIT)
    assert not marker.exists()


def test_pt2_with_code_in_a_guard_is_refused(tmp_path, pt2_bytes):
    def inject(doc):
        doc["guards_code"] = ["__import__('os').getcwd() == 1"]

    path = rewrite_pt2(pt2_bytes, tmp_path / "m", edit_json("models/model.json", inject))
    with pytest.raises(InvalidArgument, match="guard"):
        inspect_model(path, "torch_export", tmp_path / "w", LIMIT)


@pytest.mark.parametrize(
    ("data", "why"),
    [(b"\x00garbage" * 10, "a zip file"), (b"", "a zip file")],
)
def test_pt2_garbage_is_refused_without_torch(tmp_path, data, why):
    with pytest.raises(InvalidArgument, match=why):
        inspect_model(write(tmp_path / "m", data), "torch_export", tmp_path / "w", LIMIT)


def test_pt2_plain_zip_is_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "m", "w") as zf:
        zf.writestr("model/data.pkl", b"\x80\x04K\x01.")
    with pytest.raises(InvalidArgument, match=r"not part of a torch\.export archive"):
        inspect_model(tmp_path / "m", "torch_export", tmp_path / "w", LIMIT)


# -- the pt2 validators themselves -------------------------------------------------------


@pytest.mark.parametrize(
    "expr",
    [
        "Symbol('s77', positive=True, integer=True)",
        "Mul(Integer(2), Symbol('s77', positive=True, integer=True))",
        "FloorDiv(s0, 2) + Max(1, s1)",
        "Eq(Mod(s0, 4), 0)",
    ],
)
def test_sym_expr_accepts_what_torch_writes(expr):
    pt2_inspect.check_sym_expr(expr)


@pytest.mark.parametrize(
    "expr",
    [
        "__import__('os').system('id')",
        "eval('1')",
        "Symbol('x').__class__",
        "Max('__import__(\"os\")')",
        "Symbol('a b')",
        "lambda: 1",
        "Integer(1)[0]",
        "\uff45\uff56\uff41\uff4c('1')",  # full-width letters NFKC-normalise to eval
    ],
)
def test_sym_expr_refuses_code(expr):
    with pytest.raises(pt2_inspect.ArchiveRejected):
        pt2_inspect.check_sym_expr(expr)


@pytest.mark.parametrize(
    "guard",
    [
        "L['y'].size()[0] == L['x'].size()[0]",
        "L['y'].size()[0] == (2*L['x'].size()[0])",
        "2 <= L['x'].size()[0] <= 64 and L['x'].stride()[1] == 1",
        "math.floor(L['x'].size()[0] / 2) >= 1",
    ],
)
def test_guard_accepts_shape_checks(guard):
    pt2_inspect.check_guard(guard)


@pytest.mark.parametrize(
    "guard",
    [
        "__import__('os').system('id')",
        "L['x'].__class__",
        "torch.load('x')",
        "L['a\"+str(1)+\"'].size()[0] == 1",  # breaks out of torch's error-message string
        "[c for c in L]",
        "(lambda: 1)()",
        "L['x'].size(dim=0) == 1",
    ],
)
def test_guard_refuses_code(guard):
    with pytest.raises(pt2_inspect.ArchiveRejected):
        pt2_inspect.check_guard(guard)


def test_unpickling_is_locked_down_while_loading(tmp_path):
    import torch

    path = tmp_path / "obj.pt"
    torch.save({"obj": ZeroDivisionError("not a tensor")}, path)
    with pt2_inspect._locked_down(), pytest.raises(Exception, match="Weights only"):
        torch.load(path, weights_only=False)
    assert torch.load(path, weights_only=False)["obj"].args == ("not a tensor",)  # restored


def test_sympify_is_checked_while_loading():
    import sympy

    with pt2_inspect._locked_down(), pytest.raises(pt2_inspect.ArchiveRejected):
        sympy.sympify("__import__('os').getpid()")
    assert sympy.sympify("s0 + 1", locals={}) == sympy.Symbol("s0") + 1


def test_pt2_whose_weight_unpacks_far_beyond_its_size_is_refused(tmp_path, pt2_bytes, store):
    """A 100 MB weight of zeros deflates to ~100 KB: over PARETO_MAX_EXPANSION_RATIO times
    the archive, refused before any helper process loads it; nothing is stored."""
    bomb = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(pt2_bytes)) as source,
        zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for name in source.namelist():
            data = source.read(name)
            target.writestr(name, bytes(100 * 1024 * 1024) if name.endswith("weight_0") else data)
    data = bomb.getvalue()
    request = UploadRequest("bomb", "torch_export", len(data), hashlib.sha256(data).hexdigest())
    with (
        pytest.raises(InvalidArgument, match="unpacks to more than"),
        store.uploader.begin(request) as upload,
    ):
        upload.write(data)
        upload.finish()
    store.assert_no_trace()
