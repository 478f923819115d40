"""low_rank.svd on handmade MatMul/Gemm/1x1 Conv graphs and on the digits CNN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from compressors import registry
from compressors.base import Artifact, StepContext
from compressors.low_rank.svd import choose_rank
from examples.models import onnx_accuracy
from pareto_core.errors import InvalidArgument
from pareto_core.onnx_signature import onnx_signature

RNG = np.random.default_rng(0)


def save(tmp_path: Path, node: onnx.NodeProto, x_shape, y_shape, inits) -> Artifact:
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *x_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", *y_shape])],
        initializer=[numpy_helper.from_array(a.astype(np.float32), n) for n, a in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / "parent.onnx"
    onnx.save(model, str(path))
    return Artifact(path, "onnx", onnx_signature(model))


def apply(tmp_path: Path, parent: Artifact, config: dict):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    cfg = registry.parse_config("low_rank.svd", config)
    return registry.get("low_rank.svd").apply(parent, cfg, StepContext(work, parent))


def run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def best_rank_r(w: np.ndarray, r: int) -> np.ndarray:
    u, s, vt = np.linalg.svd(w.astype(np.float64), full_matrices=False)
    return (u[:, :r] * s[:r]) @ vt[:r]


def count_params(path: Path) -> int:
    return sum(int(np.prod(i.dims)) for i in onnx.load(str(path)).graph.initializer)


def test_matmul_is_factorized_with_bounded_error(tmp_path):
    w = RNG.standard_normal((64, 48)).astype(np.float32)
    parent = save(tmp_path, helper.make_node("MatMul", ["x", "w"], ["y"]), [64], [48], {"w": w})
    result = apply(tmp_path, parent, {"rank": 8, "min_size": 1})

    (layer,) = result.report["layers"]
    assert (layer["rank"], layer["params_before"], layer["params_after"]) == (8, 3072, 896)
    assert count_params(result.artifact.path) == 896
    assert [n.op_type for n in onnx.load(str(result.artifact.path)).graph.node] == ["MatMul"] * 2
    x = RNG.standard_normal((5, 64)).astype(np.float32)
    y, y_parent = run(result.artifact.path, x), run(parent.path, x)
    np.testing.assert_allclose(y, x @ best_rank_r(w, 8), rtol=1e-3, atol=1e-3)
    # ||x (W - W_r)||_F <= ||x||_2 ||W - W_r||_F = ||x||_2 * relative_error * ||W||_F
    bound = np.linalg.norm(x, 2) * layer["relative_error"] * np.linalg.norm(w)
    assert np.linalg.norm(y - y_parent) <= bound * 1.001
    assert result.artifact.signature == parent.signature


def test_energy_picks_the_smallest_rank_that_keeps_it(tmp_path):
    low = RNG.standard_normal((64, 4)) @ RNG.standard_normal((4, 48))
    w = low + 1e-3 * RNG.standard_normal((64, 48))
    parent = save(tmp_path, helper.make_node("MatMul", ["x", "w"], ["y"]), [64], [48], {"w": w})
    result = apply(tmp_path, parent, {"energy": 0.999, "min_size": 1})

    (layer,) = result.report["layers"]
    assert layer["rank"] == 4 and layer["energy_kept"] >= 0.999
    x = RNG.standard_normal((3, 64)).astype(np.float32)
    np.testing.assert_allclose(run(result.artifact.path, x), run(parent.path, x), atol=0.05)


def test_choose_rank():
    s = np.array([3.0, 2.0, 1.0, 0.0])
    assert choose_rank(s, None, 9 / 14) == 1
    assert choose_rank(s, None, 0.92) == 2  # (9 + 4) / 14 = 0.929
    assert choose_rank(s, None, 1.0) == 3
    assert choose_rank(s, 10, 0.5) == 4  # a fixed rank is capped at the full rank


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_keeps_alpha_beta_bias_and_transb(tmp_path, trans_b):
    w = RNG.standard_normal((40, 32))  # k x n
    c = RNG.standard_normal(32)
    node = helper.make_node(
        "Gemm", ["x", "w", "c"], ["y"], alpha=1.5, beta=0.5, transB=trans_b, name="fc"
    )
    inits = {"w": w.T if trans_b else w, "c": c}
    parent = save(tmp_path, node, [40], [32], inits)
    result = apply(tmp_path, parent, {"rank": 5, "min_size": 1})

    x = RNG.standard_normal((4, 40)).astype(np.float32)
    expected = 1.5 * x @ best_rank_r(w, 5) + 0.5 * c
    np.testing.assert_allclose(run(result.artifact.path, x), expected, rtol=1e-3, atol=1e-3)
    assert result.report["layers"][0]["node"] == "fc"


def test_1x1_conv_is_factorized_into_two_convs(tmp_path):
    w = RNG.standard_normal((32, 16, 1, 1))
    b = RNG.standard_normal(32)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=[2, 2])
    parent = save(tmp_path, node, [16, 6, 6], [32, 3, 3], {"w": w, "b": b})
    result = apply(tmp_path, parent, {"rank": 4, "op_types": ["Conv"], "min_size": 1})

    nodes = onnx.load(str(result.artifact.path)).graph.node
    assert [n.op_type for n in nodes] == ["Conv", "Conv"]
    x = RNG.standard_normal((2, 16, 6, 6)).astype(np.float32)
    w_r = best_rank_r(w[:, :, 0, 0], 4)
    expected = np.einsum("oi,nihw->nohw", w_r, x[:, :, ::2, ::2]) + b[None, :, None, None]
    np.testing.assert_allclose(run(result.artifact.path, x), expected, rtol=1e-3, atol=1e-3)


def test_layers_that_would_grow_are_skipped_and_reported(tmp_path):
    w = RNG.standard_normal((16, 4))
    parent = save(tmp_path, helper.make_node("MatMul", ["x", "w"], ["y"]), [16], [4], {"w": w})
    result = apply(tmp_path, parent, {"rank": 4, "min_size": 1})

    assert result.report["layers"] == []
    assert result.report["skipped"] == [
        {"weight": "w", "reason": "rank 4 needs 80 params >= 64 of the dense 16x4"}
    ]
    assert "no layer factorized" in result.report["message"]


def test_digits_cnn_classifier_is_factorized(tmp_path, digits_model):
    parent = Artifact(digits_model.path, "onnx", onnx_signature(onnx.load(str(digits_model.path))))
    result = apply(tmp_path, parent, {"rank": 6})

    (layer,) = result.report["layers"]
    assert layer["op"] == "Gemm" and layer["params_after"] < layer["params_before"]
    assert result.report["skipped"] == []
    accuracy = onnx_accuracy(result.artifact.path, digits_model.X_test, digits_model.y_test)
    assert 0.1 < accuracy <= 1.0
    assert result.artifact.signature == parent.signature


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"energy": 1.5}, "energy"),
        ({"rank": 0}, "rank"),
        ({"op_types": []}, "op_types"),
        ({"op_types": ["Add"]}, "op_types"),
        ({"rank": 4, "energy": 0.9}, "either rank or energy"),
    ],
)
def test_config_errors_name_the_field(config, field):
    with pytest.raises(InvalidArgument, match=field):
        registry.parse_config("low_rank.svd", config)
