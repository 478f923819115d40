"""fold.batchnorm on small handmade graphs: exact folding into Conv/Gemm, and what is left."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from compressors import registry
from compressors.base import Artifact, StepContext
from pareto_core.errors import InvalidArgument
from pareto_core.onnx_signature import onnx_signature

RNG = np.random.default_rng(0)


def _init(name: str, *shape: int, positive: bool = False) -> onnx.TensorProto:
    array = RNG.standard_normal(shape).astype(np.float32)
    return numpy_helper.from_array(np.abs(array) + 0.1 if positive else array, name)


def _bn_inits(prefix: str, channels: int) -> list[onnx.TensorProto]:
    return [
        _init(f"{prefix}_scale", channels),
        _init(f"{prefix}_bias", channels),
        _init(f"{prefix}_mean", channels),
        _init(f"{prefix}_var", channels, positive=True),
    ]


def _bn(x: str, y: str, prefix: str) -> onnx.NodeProto:
    names = [f"{prefix}_{p}" for p in ("scale", "bias", "mean", "var")]
    return helper.make_node("BatchNormalization", [x, *names], [y], epsilon=1e-3, name=prefix)


def _save(tmp_path: Path, nodes, inputs, outputs, inits) -> Artifact:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / "parent.onnx"
    onnx.save(model, str(path))
    return Artifact(path, "onnx", onnx_signature(model))


def conv_bn_relu(tmp_path: Path, conv_bias: bool, also_output: bool = False) -> Artifact:
    conv_inputs = ["x", "w", "b"] if conv_bias else ["x", "w"]
    nodes = [
        helper.make_node("Conv", conv_inputs, ["c"], pads=[1, 1, 1, 1], name="conv"),
        _bn("c", "n", "bn"),
        helper.make_node("Relu", ["n"], ["y"]),
    ]
    inits = [_init("w", 4, 3, 3, 3), _init("b", 4), *_bn_inits("bn", 4)]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 5, 5])]
    if also_output:
        outputs.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, ["batch", 4, 5, 5]))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 5, 5])
    return _save(tmp_path, nodes, [x], outputs, inits if conv_bias else [inits[0], *inits[2:]])


def gemm_bn(tmp_path: Path, trans_b: int) -> Artifact:
    w_shape = (6, 8) if trans_b else (8, 6)
    nodes = [
        helper.make_node("Gemm", ["x", "w", "c"], ["g"], alpha=2.0, beta=0.5, transB=trans_b),
        _bn("g", "y", "bn"),
    ]
    inits = [_init("w", *w_shape), _init("c", 6), *_bn_inits("bn", 6)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 6])
    return _save(tmp_path, nodes, [x], [y], inits)


def fold(tmp_path: Path, parent: Artifact, config: dict | None = None):
    work = tmp_path / "work"
    work.mkdir()
    technique = registry.get("fold.batchnorm")
    cfg = registry.parse_config("fold.batchnorm", config or {})
    return technique.apply(parent, cfg, StepContext(work, parent))


def run(path: Path, x: np.ndarray, name: str = "x") -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {name: x})


def op_types(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


@pytest.mark.parametrize("conv_bias", [True, False])
def test_conv_batchnorm_is_folded_exactly(tmp_path, conv_bias):
    parent = conv_bn_relu(tmp_path, conv_bias)
    result = fold(tmp_path, parent)

    assert op_types(result.artifact.path) == ["Conv", "Relu"]
    assert result.report["folded"] == [{"node": "bn", "into": "conv", "op": "Conv"}]
    assert result.artifact.signature == parent.signature
    x = RNG.standard_normal((3, 3, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(run(result.artifact.path, x)[0], run(parent.path, x)[0], atol=1e-4)


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_batchnorm_is_folded_exactly(tmp_path, trans_b):
    parent = gemm_bn(tmp_path, trans_b)
    result = fold(tmp_path, parent)

    assert op_types(result.artifact.path) == ["Gemm"]
    x = RNG.standard_normal((5, 8)).astype(np.float32)
    np.testing.assert_allclose(run(result.artifact.path, x)[0], run(parent.path, x)[0], atol=1e-4)
    names = {i.name for i in onnx.load(str(result.artifact.path)).graph.initializer}
    assert not any(name.startswith("bn_") for name in names)  # BN params are gone


def test_batchnorm_whose_input_is_also_an_output_is_left_alone(tmp_path):
    parent = conv_bn_relu(tmp_path, conv_bias=True, also_output=True)
    result = fold(tmp_path, parent)

    assert op_types(result.artifact.path) == ["Conv", "BatchNormalization", "Relu"]
    assert result.report["folded"] == []
    assert "also read elsewhere" in result.report["skipped"][0]["reason"]
    assert "cannot be" in result.report["message"]


def test_batchnorm_on_a_graph_input_is_skipped_with_the_reason(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 5, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 5, 5])
    parent = _save(tmp_path, [_bn("x", "y", "bn")], [x], [y], _bn_inits("bn", 4))
    result = fold(tmp_path, parent)

    assert result.report["skipped"] == [
        {"node": "bn", "reason": "its input comes from a graph input, not from Conv or Gemm"}
    ]


def test_model_without_batchnorm_is_a_reported_no_op(tmp_path, onnx_model_factory):
    path = tmp_path / "tiny.onnx"
    onnx.save(onnx_model_factory(), str(path))
    parent = Artifact(path, "onnx", onnx_signature(onnx.load(str(path))))
    before = path.read_bytes()
    result = fold(tmp_path, parent)

    assert result.report["message"] == "nothing to fold: no BatchNormalization in the graph"
    assert result.artifact.path != parent.path
    assert path.read_bytes() == before
    x = np.ones((2, 3), dtype=np.float32)
    np.testing.assert_array_equal(run(result.artifact.path, x, "X")[0], run(path, x, "X")[0])


def test_unknown_config_field_is_named():
    with pytest.raises(InvalidArgument, match=r"config\.threshold"):
        registry.parse_config("fold.batchnorm", {"threshold": 1})
