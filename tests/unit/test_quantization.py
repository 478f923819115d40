"""Quantization and precision techniques on real models run with ONNX Runtime.

The digits CNN (conftest) for everything, a handmade self-attention graph for the
transformer detection, and one MiniLM test for the real transformer path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from compressors import registry
from compressors.base import Artifact, Dataset, StepContext, StepResult
from compressors.graph.files import artifact_for, load_model
from compressors.graph.run import score
from compressors.graph.transformer import attention_shape, looks_like_transformer
from examples.models import BuiltModel, digits_split
from pareto_core.errors import Cancelled, FailedPrecondition, InvalidArgument

# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def digits(digits_model: BuiltModel) -> Artifact:
    return artifact_for(digits_model.path)


@pytest.fixture(scope="module")
def digits_data() -> dict[str, Dataset]:
    x_train, x_test, y_train, y_test = digits_split(0)
    return {
        "calibration": Dataset("digits-train", {"pixels": x_train[:256]}, y_train[:256]),
        "evaluation": Dataset("digits-test", {"pixels": x_test}, y_test),
    }


def apply(
    name: str,
    artifact: Artifact,
    work_dir: Path,
    config: dict | None = None,
    datasets: dict[str, Dataset] | None = None,
    budget: dict | None = None,
) -> StepResult:
    work_dir.mkdir(parents=True, exist_ok=True)
    ctx = StepContext(work_dir, artifact, datasets or {}, quality_budget=budget or {})
    result = registry.get(name).apply(artifact, registry.parse_config(name, config), ctx)
    json.dumps(result.report)  # kept with the variant as JSON
    return result


def run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def accuracy(path: Path, model: BuiltModel) -> float:
    return float((run(path, {"pixels": model.X_test}).argmax(1) == model.y_test).mean())


def assert_valid(result: StepResult, parent: Artifact, work_dir: Path) -> None:
    """A checked ONNX file in the work dir, with the parent's IO, that ORT can load."""
    assert result.artifact.path.parent == work_dir and result.artifact.path.is_file()
    assert result.artifact.format == "onnx"
    onnx.checker.check_model(str(result.artifact.path))
    assert result.artifact.signature == parent.signature
    ort.InferenceSession(str(result.artifact.path), providers=["CPUExecutionProvider"])


def attention_model(path: Path) -> Artifact:
    """One single-head self-attention block, hidden 8, scores scaled by 1/sqrt(4): the scale
    of a 2-head block of width 8."""
    rng = np.random.default_rng(0)
    names = ["Wq", "Wk", "Wv", "Wo"]
    inits = [numpy_helper.from_array(rng.normal(size=(8, 8)).astype(np.float32), n) for n in names]
    inits.append(numpy_helper.from_array(np.array(0.5, np.float32), "scale"))
    nodes = [
        helper.make_node("MatMul", ["x", "Wq"], ["q"], name="q"),
        helper.make_node("MatMul", ["x", "Wk"], ["k"], name="k"),
        helper.make_node("MatMul", ["x", "Wv"], ["v"], name="v"),
        helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["qk"], name="qk"),
        helper.make_node("Mul", ["qk", "scale"], ["scores"], name="scaled"),
        helper.make_node("Softmax", ["scores"], ["probs"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["probs", "v"], ["ctx"], name="ctx"),
        helper.make_node("MatMul", ["ctx", "Wo"], ["y"], name="out"),
    ]
    graph = helper.make_graph(
        nodes,
        "attention",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 8])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return artifact_for(path)


# --------------------------------------------------------------------------- imports, configs


def test_technique_modules_import_without_onnxruntime_or_torch() -> None:
    code = (
        "import sys\n"
        "import compressors.quantization.dynamic, compressors.quantization.static\n"
        "import compressors.quantization.accuracy_aware, compressors.quantization.fp16\n"
        "import compressors.quantization.weight_only\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'onnx') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


@pytest.mark.parametrize(
    ("name", "config", "field"),
    [
        ("quantize.dynamic", {"per_channel": "maybe"}, "config.per_channel"),
        ("quantize.dynamic", {"weight_type": "int4"}, "config.weight_type"),
        ("quantize.dynamic", {"optimize": "sometimes"}, "config.optimize"),
        ("quantize.dynamic", {"num_heads": 12}, "set num_heads and hidden_size together"),
        ("quantize.dynamic", {"op_types": ["Mat Mul"]}, "config.op_types.0"),
        ("quantize.static", {"method": "kl"}, "config.method"),
        ("quantize.static", {"calibration_samples": 0}, "config.calibration_samples"),
        ("quantize.static", {"percentile": 99.9}, "percentile applies to method 'percentile'"),
        ("quantize.static", {"method": "percentile", "percentile": 50}, "config.percentile"),
        ("quantize.static", {"bogus": 1}, "config.bogus"),
        ("quantize.accuracy_aware", {"base": "qat"}, "config.base"),
        ("quantize.accuracy_aware", {"static": {"method": "kl"}}, "config.static.method"),
        ("quantize.accuracy_aware", {"max_fp32_nodes": 0}, "config.max_fp32_nodes"),
        ("convert.fp16", {"keep_io_types": "sure"}, "config.keep_io_types"),
        ("convert.fp16", {"extra_block_ops": [""]}, "config.extra_block_ops.0"),
    ],
)
def test_bad_config_names_the_field(name: str, config: dict, field: str) -> None:
    with pytest.raises(InvalidArgument, match=field.replace(".", r"\.")):
        registry.parse_config(name, config)


def test_configs_round_trip_as_json() -> None:
    config = registry.parse_config(
        "quantize.accuracy_aware", {"base": "static", "static": {"method": "entropy"}}
    )
    payload = registry.config_to_json("quantize.accuracy_aware", config)
    assert registry.config_from_json(payload) == ("quantize.accuracy_aware", config)


# --------------------------------------------------------------------------- quantize.dynamic


def test_dynamic_on_the_cnn_is_smaller_and_agrees(digits, digits_model, tmp_path) -> None:
    result = apply("quantize.dynamic", digits, tmp_path)
    assert_valid(result, digits, tmp_path)
    assert result.report["optimizer"] == {"ran": False, "reason": "no self-attention in the graph"}
    assert result.report["size_ratio"] < 0.5
    assert "ConvInteger" in result.report["ops"]
    assert accuracy(result.artifact.path, digits_model) >= digits_model.accuracy - 0.02


def test_dynamic_keeps_excluded_nodes_in_float(digits, tmp_path) -> None:
    config = {"nodes_to_exclude": ["/6/Gemm", "/0/Conv"]}
    result = apply("quantize.dynamic", digits, tmp_path, config)
    ops = result.report["ops"]
    assert ops.get("ConvInteger") == 1 and ops.get("Conv") == 1 and "MatMulInteger" not in ops


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"nodes_to_exclude": ["/9/Nope"]}, "config.nodes_to_exclude"),
        ({"op_types": ["Softmax"]}, "config.op_types"),
    ],
)
def test_dynamic_rejects_names_the_model_lacks(digits, tmp_path, config, field) -> None:
    with pytest.raises(InvalidArgument, match=field.replace(".", r"\.")):
        apply("quantize.dynamic", digits, tmp_path, config)


def test_attention_is_detected_from_the_graph(tmp_path, digits) -> None:
    model = load_model(attention_model(tmp_path / "attn.onnx").path)
    assert looks_like_transformer(model)
    assert attention_shape(model) == (2, 8)
    cnn = load_model(digits.path)
    assert not looks_like_transformer(cnn)
    assert attention_shape(cnn) is None


@pytest.mark.parametrize("optimize", ["auto", "never"])
def test_dynamic_on_an_attention_block(tmp_path, optimize) -> None:
    parent = attention_model(tmp_path / "attn.onnx")
    result = apply("quantize.dynamic", parent, tmp_path / "out", {"optimize": optimize})
    assert_valid(result, parent, tmp_path / "out")
    assert result.report["optimizer"]["ran"] is (optimize == "auto")
    assert not result.report["optimizer"].get("used")  # nothing here matches ORT's fusers
    x = np.random.default_rng(1).normal(size=(3, 4, 8)).astype(np.float32)
    cosines = score(run(result.artifact.path, {"x": x}), run(parent.path, {"x": x}), None)
    assert cosines["cosine_mean"] > 0.98


def test_minilm_dynamic_fuses_attention_and_keeps_fidelity(minilm_model, tmp_path) -> None:
    from examples.models import tokenize
    from examples.text import english_sentences

    parent = artifact_for(minilm_model.path)
    result = apply("quantize.dynamic", parent, tmp_path)
    assert_valid(result, parent, tmp_path)
    optimizer = result.report["optimizer"]
    assert optimizer["used"] and optimizer["fused"]["Attention"] == 6
    assert (optimizer["num_heads"], optimizer["hidden_size"]) == (12, 384)
    assert result.report["size_ratio"] <= 0.26
    feeds = tokenize(english_sentences(32, seed=7), 32)
    quality = score(run(result.artifact.path, feeds), run(parent.path, feeds), None)
    assert quality["cosine_mean"] >= 0.99


# --------------------------------------------------------------------------- quantize.static


def test_static_qdq_on_the_cnn(digits, digits_model, digits_data, tmp_path) -> None:
    result = apply("quantize.static", digits, tmp_path, {}, digits_data)
    assert_valid(result, digits, tmp_path)
    report = result.report
    assert report["calibration"] == {"dataset": "digits-train", "method": "minmax", "samples": 256}
    assert report["preprocess"]["ran"] and report["format"] == "qdq"
    assert {"QuantizeLinear", "DequantizeLinear"} <= set(report["ops"])
    assert report["size_ratio"] < 0.45
    assert accuracy(result.artifact.path, digits_model) >= digits_model.accuracy - 0.01


@pytest.mark.parametrize(
    "config",
    [
        {"method": "entropy", "calibration_samples": 64},
        {"method": "percentile", "percentile": 99.99, "activation_type": "int8"},
        {"format": "qoperator", "per_channel": False, "preprocess": False},
        {"op_types": ["Conv"], "nodes_to_exclude": ["/0/Conv"]},
    ],
)
def test_static_options(digits, digits_model, digits_data, tmp_path, config) -> None:
    result = apply("quantize.static", digits, tmp_path, config, digits_data)
    assert_valid(result, digits, tmp_path)
    assert accuracy(result.artifact.path, digits_model) >= digits_model.accuracy - 0.02
    if config.get("format") == "qoperator":
        assert "QLinearConv" in result.report["ops"]
    if "op_types" in config:  # only /2/Conv quantized: the Gemm and /0/Conv stay float
        model = load_model(result.artifact.path)
        gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
        assert gemm.input[1] == "6.weight"


def activation_scales(path: Path) -> dict[str, float]:
    model = load_model(path)
    return {
        i.name: float(numpy_helper.to_array(i))
        for i in model.graph.initializer
        if i.name.endswith("Relu_output_0_scale")
    }


def test_entropy_calibration_clips_unlike_minmax(digits, digits_data, tmp_path) -> None:
    """ORT's entropy calibrator at its default 128 bins would equal minmax."""
    scales = {}
    for method in ("minmax", "entropy"):
        config = {"method": method, "calibration_samples": 64}
        result = apply("quantize.static", digits, tmp_path / method, config, digits_data)
        scales[method] = activation_scales(result.artifact.path)
    assert len(scales["minmax"]) == 2 and scales["minmax"].keys() == scales["entropy"].keys()
    assert all(scales["entropy"][k] < scales["minmax"][k] for k in scales["minmax"])


def test_static_needs_a_calibration_dataset(digits, tmp_path) -> None:
    with pytest.raises(FailedPrecondition, match="calibration"):
        apply("quantize.static", digits, tmp_path)


def test_static_names_a_missing_model_input(digits, tmp_path) -> None:
    data = {"calibration": Dataset("bad", {"image": np.zeros((4, 64)), "extra": np.zeros(4)})}
    with pytest.raises(FailedPrecondition, match="'pixels'"):
        apply("quantize.static", digits, tmp_path, {}, data)


def test_calibration_stops_when_cancelled(digits, digits_data) -> None:
    from compressors.quantization.calibration import DatasetReader

    seen: list[float] = []
    inputs = digits_data["calibration"].inputs
    reader = DatasetReader(digits.signature, inputs, 100, 32, progress=seen.append)
    assert sum(len(b["pixels"]) for b in iter(reader.get_next, None)) == 100
    assert seen[-1] == 1.0 and reader.batches_read == 4
    stopped = DatasetReader(digits.signature, inputs, 100, 32, is_cancelled=lambda: True)
    with pytest.raises(Cancelled):
        stopped.get_next()


def test_a_quantized_model_is_not_quantized_again(digits, digits_data, tmp_path) -> None:
    once = apply("quantize.static", digits, tmp_path / "once", {}, digits_data).artifact
    with pytest.raises(FailedPrecondition, match="already int8"):
        apply("quantize.dynamic", once, tmp_path / "twice")
    with pytest.raises(FailedPrecondition, match="already int8"):
        apply("convert.fp16", once, tmp_path / "fp16")
    half = apply("convert.fp16", digits, tmp_path / "half").artifact
    with pytest.raises(FailedPrecondition, match="already fp16"):
        apply("quantize.static", half, tmp_path / "half-int8", {}, digits_data)


# --------------------------------------------------------------------------- accuracy-aware


def test_accuracy_aware_reports_sensitivity(digits, digits_data, tmp_path) -> None:
    result = apply("quantize.accuracy_aware", digits, tmp_path, {}, digits_data)
    assert_valid(result, digits, tmp_path)
    report = result.report
    assert report["metric"] == "accuracy" and report["evaluation"]["reference"] == "parent"
    assert {e["node"] for e in report["sensitivity"]} == {"/0/Conv", "/2/Conv", "/6/Gemm"}
    gains = [(e["gain"], e["cosine_gain"]) for e in report["sensitivity"]]
    assert gains == sorted(gains, reverse=True)
    assert report["budget_ok"] is True and "max_accuracy_drop 0.01" in report["budget_reason"]
    assert report["fp32_nodes"] == [] and report["search"] == []
    assert report["optimizer"]["ran"] is False  # base dynamic: no attention in a CNN


def test_accuracy_aware_keeps_sensitive_nodes_for_a_tight_budget(
    digits, digits_data, tmp_path
) -> None:
    budget = {"min_cosine": 0.99999999}  # stricter than int8 can be: the search runs to its end
    config = {"base": "static", "max_fp32_nodes": 2}
    result = apply("quantize.accuracy_aware", digits, tmp_path, config, digits_data, budget)
    assert_valid(result, digits, tmp_path)
    report = result.report
    ranking = [e["node"] for e in report["sensitivity"]]
    assert report["metric"] == "cosine_mean" and report["calibration"]["samples"] == 256
    assert [t["fp32_nodes"] for t in report["search"]] == [ranking[:1], ranking[:2]]
    assert report["budget_ok"] is False and "below min_cosine" in report["budget_reason"]
    assert report["fp32_nodes"] in (ranking[:1], ranking[:2])
    model = load_model(result.artifact.path)
    kept = {n.name: n for n in model.graph.node if n.name in report["fp32_nodes"]}
    float_weights = {i.name for i in model.graph.initializer if i.data_type == TensorProto.FLOAT}
    assert all(node.input[1] in float_weights for node in kept.values())
    assert sorted(p.name for p in tmp_path.glob("candidate-*.onnx")) == [result.artifact.path.name]


def test_accuracy_aware_without_labels_uses_cosine(digits, digits_data, tmp_path) -> None:
    unlabeled = {"evaluation": Dataset("x", digits_data["evaluation"].inputs)}
    config = {"max_candidates": 1}
    result = apply("quantize.accuracy_aware", digits, tmp_path, config, unlabeled)
    report = result.report
    assert report["metric"] == "cosine_mean" and "accuracy" not in report["quality"]
    assert len(report["sensitivity"]) == 1 and len(report["not_analyzed"]) == 2
    assert report["budget_ok"] and "min_cosine 0.99" in report["budget_reason"]


@pytest.mark.parametrize(
    ("config", "datasets", "needs"),
    [({}, {}, "'evaluation'"), ({"base": "static"}, {"evaluation": None}, "'calibration'")],
)
def test_accuracy_aware_needs_its_datasets(digits, digits_data, tmp_path, config, datasets, needs):
    datasets = {role: digits_data[role] for role in datasets}
    with pytest.raises(FailedPrecondition, match=needs):
        apply("quantize.accuracy_aware", digits, tmp_path, config, datasets)


# --------------------------------------------------------------------------- convert.fp16


def test_fp16_halves_the_cnn_and_keeps_float32_io(digits, digits_model, tmp_path) -> None:
    result = apply("convert.fp16", digits, tmp_path)
    assert_valid(result, digits, tmp_path)
    assert 0.45 < result.report["size_ratio"] < 0.6
    assert "Range" in result.report["op_block_list"]
    assert accuracy(result.artifact.path, digits_model) >= digits_model.accuracy - 0.01


def test_fp16_with_float16_io(digits, digits_model, tmp_path) -> None:
    result = apply("convert.fp16", digits, tmp_path, {"keep_io_types": False})
    signature = result.artifact.signature
    assert signature.inputs[0].datatype == "FP16" and signature.outputs[0].datatype == "FP16"
    logits = run(result.artifact.path, {"pixels": digits_model.X_test.astype(np.float16)})
    assert logits.dtype == np.float16


def test_fp16_node_block_list(digits, tmp_path) -> None:
    result = apply("convert.fp16", digits, tmp_path, {"node_block_list": ["/6/Gemm"]})
    model = load_model(result.artifact.path)
    weight = next(i for i in model.graph.initializer if i.name == "6.weight")
    assert weight.data_type == TensorProto.FLOAT
    with pytest.raises(InvalidArgument, match=r"config\.node_block_list"):
        apply("convert.fp16", digits, tmp_path / "bad", {"node_block_list": ["nope"]})
