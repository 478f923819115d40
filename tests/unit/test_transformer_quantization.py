"""quantize.static in transformer mode (with SmoothQuant), quantize.weight_only (RTN, HQQ,
GPTQ, embeddings) and quantize.accuracy_aware on MiniLM, run with ONNX Runtime; fidelity
is measured on held-out sentences the calibration never saw. Small handmade graphs check
the graph rewrites (float readers, SmoothQuant folding) exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compressors import registry
from compressors.base import Artifact, Dataset, StepContext, StepResult
from compressors.graph.files import artifact_for, load_model
from compressors.graph.qdq import activation_matmuls, keep_float_readers, linear_layers
from pareto_core.errors import FailedPrecondition, InvalidArgument
from tests.helpers.text_models import embedding_cosine, ops, run, sentence_sets


@pytest.fixture(scope="module")
def texts() -> tuple[dict, dict]:
    return sentence_sets(calibration=32, held_out=32)


@pytest.fixture(scope="module")
def minilm(minilm_model) -> Artifact:
    return artifact_for(minilm_model.path)


def apply(
    name: str, artifact: Artifact, work_dir: Path, config: dict, calibration: dict | None = None
) -> StepResult:
    work_dir.mkdir(parents=True, exist_ok=True)
    datasets = {} if calibration is None else {"calibration": Dataset("calib", calibration)}
    ctx = StepContext(work_dir, artifact, datasets)
    result = registry.get(name).apply(artifact, registry.parse_config(name, config), ctx)
    json.dumps(result.report)  # kept with the variant as JSON
    return result


@pytest.fixture(scope="module")
def static_minilm(minilm, texts, tmp_path_factory) -> StepResult:
    config = {"calibration_samples": 32}
    return apply("quantize.static", minilm, tmp_path_factory.mktemp("static"), config, texts[0])


# --------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    ("name", "config", "field"),
    [
        ("quantize.static", {"smooth_quant_alpha": 1.5}, "config.smooth_quant_alpha"),
        ("quantize.static", {"smooth_quant_alpha": -0.1}, "config.smooth_quant_alpha"),
        ("quantize.static", {"transformer": "sometimes"}, "config.transformer"),
        ("quantize.static", {"transformer": "always", "format": "qoperator"}, "qoperator"),
        ("quantize.static", {"attention_matmuls": True, "transformer": "never"}, "never"),
        ("quantize.static", {"embedding_scales": "row"}, "config.embedding_scales"),
        (
            "quantize.static",
            {"embedding_scales": "block", "embedding_block": 48},
            "config.embedding_block",
        ),
        (
            "quantize.static",
            {"embedding_scales": "block", "embedding_block": 8},
            "config.embedding_block",
        ),
        (
            "quantize.static",
            {"embedding_block": 64, "small_table_bits": 8},
            "applies to embedding_scales 'block' or small_table_bits 4",
        ),
        ("quantize.static", {"small_table_bits": 2}, "config.small_table_bits"),
        ("quantize.static", {"min_embedding_rows": 0}, "config.min_embedding_rows"),
        ("quantize.static", {"float_linear_layers": [1, 1]}, "names a position twice"),
        ("quantize.static", {"float_linear_layers": [0], "transformer": "never"}, "never"),
        ("quantize.static", {"float_linear_layers": ["last"]}, "config.float_linear_layers"),
        ("quantize.weight_only", {"bits": 3}, "config.bits"),
        ("quantize.weight_only", {"block_size": 48}, "config.block_size"),
        ("quantize.weight_only", {"block_size": 8}, "config.block_size"),
        ("quantize.weight_only", {"algorithm": "awq"}, "config.algorithm"),
        ("quantize.weight_only", {"accuracy_level": 5}, "config.accuracy_level"),
        ("quantize.weight_only", {"algorithm": "hqq", "symmetric": True}, "symmetric"),
        ("quantize.weight_only", {"algorithm": "hqq", "bits": 8}, "bits 8 needs"),
        ("quantize.weight_only", {"damp": 0.1}, "apply to algorithm 'gptq'"),
        ("quantize.weight_only", {"embedding_bits": 2}, "config.embedding_bits"),
        ("quantize.accuracy_aware", {"static": {"smooth_quant_alpha": 2}}, "static.smooth"),
    ],
)
def test_bad_config_names_the_field(name: str, config: dict, field: str) -> None:
    with pytest.raises(InvalidArgument, match=field.replace(".", r"\.")):
        registry.parse_config(name, config)


def test_block_size_must_be_a_power_of_two() -> None:
    with pytest.raises(InvalidArgument, match="must be a power of two"):
        registry.parse_config("quantize.weight_only", {"block_size": 96})
    assert registry.parse_config("quantize.weight_only", {"block_size": 128}).block_size == 128


# --------------------------------------------------------------------------- static, MiniLM


def test_static_on_minilm_quantizes_linear_layers_only(minilm, static_minilm, texts) -> None:
    report = static_minilm.report
    assert report["transformer"] == {
        "used": True,
        "linear_layers": 36,
        "float_attention_matmuls": 12,
        "float_linear_layers": [],
    }
    model = load_model(static_minilm.artifact.path)
    producers = {out: n for n in model.graph.node for out in n.output}
    lookups = {n.output[0] for n in model.graph.node if n.op_type == "Gather"}
    tables = {  # the embedding rows, dequantized after the lookup
        n.output[0]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in lookups
    }

    def from_dq(node) -> list[bool]:
        return [
            getattr(producers.get(name), "op_type", "") == "DequantizeLinear" and name not in tables
            for name in node.input
        ]

    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    linear = [n for n in matmuls if from_dq(n) == [True, True]]
    attention = [n for n in matmuls if from_dq(n) == [False, False]]
    assert (len(linear), len(attention)) == (36, 12)
    float_ops = ("Softmax", "LayerNormalization", "Add", "Mul", "Div")
    assert not any(any(from_dq(n)) for n in model.graph.node if n.op_type in float_ops)
    counts = ops(static_minilm.artifact.path)
    assert counts["QuantizeLinear"] == 24  # one per distinct input of the linear layers
    # position table: 4 bits in blocks; word and token-type tables: 8 bits per column
    tables_by_bits = {
        t["table"].split(".")[-2]: t["bits"] for t in report["embeddings"]["quantized"]
    }
    assert tables_by_bits == {
        "position_embeddings": 4,
        "word_embeddings": 8,
        "token_type_embeddings": 8,
    }
    assert len(tables) == 2 and counts["GatherBlockQuantized"] == 1
    assert report["zero_points_dropped"] == 36  # symmetric int8 weights: zero is the default
    assert report["size_ratio"] < 0.2525  # dynamic int8 with its per-tensor tables: 0.2525
    assert embedding_cosine(static_minilm.artifact.path, minilm.path, texts[1]) >= 0.99


def test_static_embeddings_in_blocks_and_float_layers_on_minilm(
    minilm, static_minilm, texts, tmp_path
) -> None:
    config = {"calibration_samples": 8, "embedding_scales": "block", "embedding_block": 128}
    config["min_embedding_rows"] = 1024  # the position table (512 rows) stays float
    config["float_linear_layers"] = [0, -1]  # the first query projection, the last FFN output
    result = apply("quantize.static", minilm, tmp_path, config, texts[0])
    transformer = result.report["transformer"]
    assert transformer["linear_layers"] == 34 and len(transformer["float_linear_layers"]) == 2
    names = [n.name for n in load_model(result.artifact.path).graph.node if n.op_type == "MatMul"]
    assert set(transformer["float_linear_layers"]) <= set(names)  # still float MatMuls
    assert ops(result.artifact.path)["QuantizeLinear"] == 23  # the last FFN input not rounded
    quantized = result.report["embeddings"]["quantized"]
    assert [t["shape"] for t in quantized] == [[30522, 384]]
    assert ops(result.artifact.path)["GatherBlockQuantized"] == 1
    # 30522 x 3 scales and zero points, and 512 float rows: larger than per column
    assert result.report["size_ratio"] > static_minilm.report["size_ratio"]
    assert embedding_cosine(result.artifact.path, minilm.path, texts[1]) >= 0.99


def test_float_linear_layers_out_of_range_or_without_attention(
    minilm, digits_model, tmp_path
) -> None:
    with pytest.raises(InvalidArgument, match=r"float_linear_layers: \[36\] out of range.*36"):
        apply("quantize.static", minilm, tmp_path / "a", {"float_linear_layers": [36]}, {})
    with pytest.raises(FailedPrecondition, match="float_linear_layers applies to the transformer"):
        digits = artifact_for(digits_model.path)
        apply("quantize.static", digits, tmp_path / "b", {"float_linear_layers": [0]}, {})


def test_static_with_smooth_quant_and_entropy_on_minilm(minilm, texts, tmp_path) -> None:
    config = {"method": "entropy", "smooth_quant_alpha": 0.7, "calibration_samples": 32}
    result = apply("quantize.static", minilm, tmp_path, config, texts[0])
    smooth = result.report["smooth_quant"]
    assert smooth["alpha"] == 0.7 and smooth["layers"] == 36 and smooth["inputs"] == 24
    # post-norm BERT: every LayerNorm output is a residual too, so the division is a Mul
    assert smooth["mul_inserted"] == 24 and smooth["folded_into_layernorm"] == 0
    muls = [n for n in load_model(result.artifact.path).graph.node if n.name.endswith("_Mul")]
    assert len([n for n in muls if "smoothed" in n.name]) == 24
    assert embedding_cosine(result.artifact.path, minilm.path, texts[1]) >= 0.99


# --------------------------------------------------------------------------- weight-only


@pytest.mark.parametrize(
    ("config", "min_cosine", "max_size"),
    [
        ({"algorithm": "rtn"}, 0.96, 0.2),
        ({"algorithm": "gptq", "calibration_samples": 32}, 0.98, 0.2),
        ({"algorithm": "rtn", "bits": 8, "symmetric": True}, 0.999, 0.32),
    ],
)
def test_weight_only_on_minilm(minilm, texts, tmp_path, config, min_cosine, max_size) -> None:
    result = apply("quantize.weight_only", minilm, tmp_path, config, texts[0])
    counts = ops(result.artifact.path)
    assert counts["MatMulNBits"] == 36 and counts["GatherBlockQuantized"] == 1
    assert counts["MatMul"] == 12  # attention products stay float
    report = result.report
    assert report["layers"] == 36 and report["bits"] == config.get("bits", 4)
    assert [t["shape"] for t in report["embeddings"]["quantized"]] == [[30522, 384]]
    assert report["size_ratio"] <= max_size
    assert embedding_cosine(result.artifact.path, minilm.path, texts[1]) >= min_cosine


def test_weight_only_hqq_and_embeddings_never(minilm, texts, tmp_path) -> None:
    config = {"algorithm": "hqq", "block_size": 64, "embeddings": "never"}
    result = apply("quantize.weight_only", minilm, tmp_path, config)
    counts = ops(result.artifact.path)
    assert counts["MatMulNBits"] == 36 and "GatherBlockQuantized" not in counts
    assert result.report["embeddings"] == {"quantized": [], "reason": "embeddings is 'never'"}
    assert 0.5 < result.report["size_ratio"] < 0.7  # the float embedding table is half of it
    model = load_model(result.artifact.path)
    levels = [a.i for n in model.graph.node for a in n.attribute if a.name == "accuracy_level"]
    assert levels == [4] * 36
    assert embedding_cosine(result.artifact.path, minilm.path, texts[1]) >= 0.95


def test_without_the_block_lookup_kernel_tables_go_to_8_bits_per_column(
    minilm, texts, tmp_path, monkeypatch
) -> None:
    """An ONNX Runtime without a CPU GatherBlockQuantized kernel (a stand-in: the installed
    one has it): quantize.static stores every table 8-bit per column (standard ONNX ops)
    and says why; quantize.weight_only leaves the tables float, or refuses with 'always'."""
    from compressors.quantization import embeddings

    monkeypatch.setattr(embeddings, "runtime_support", lambda: "stand-in: no kernel")
    static = apply("quantize.static", minilm, tmp_path / "s", {"calibration_samples": 8}, texts[0])
    report = static.report["embeddings"]
    assert {t["table"].split(".")[-2]: t["bits"] for t in report["quantized"]} == {
        "position_embeddings": 8,
        "word_embeddings": 8,
        "token_type_embeddings": 8,
    }
    assert report["per_column_because"] == "stand-in: no kernel"
    assert "GatherBlockQuantized" not in ops(static.artifact.path)
    assert embedding_cosine(static.artifact.path, minilm.path, texts[1]) >= 0.99

    auto = apply("quantize.weight_only", minilm, tmp_path / "auto", {"algorithm": "rtn"})
    assert auto.report["embeddings"] == {"quantized": [], "reason": "stand-in: no kernel"}
    assert "GatherBlockQuantized" not in ops(auto.artifact.path)
    with pytest.raises(FailedPrecondition, match="embeddings 'always', but stand-in: no kernel"):
        apply("quantize.weight_only", minilm, tmp_path / "always", {"embeddings": "always"})


def test_gptq_needs_a_calibration_dataset(minilm, tmp_path) -> None:
    with pytest.raises(FailedPrecondition, match="'calibration' dataset"):
        apply("quantize.weight_only", minilm, tmp_path, {"algorithm": "gptq"})


def test_weight_only_refuses_a_quantized_model(static_minilm, tmp_path) -> None:
    with pytest.raises(FailedPrecondition, match="already int8"):
        apply("quantize.weight_only", static_minilm.artifact, tmp_path, {})


# --------------------------------------------------------------------------- accuracy-aware


def test_accuracy_aware_static_ranks_the_linear_layers_of_minilm(minilm, texts, tmp_path) -> None:
    config = {
        "base": "static",
        "static": {"calibration_samples": 16},
        "max_candidates": 2,
        "eval_samples": 16,
    }
    ctx = StepContext(
        tmp_path,
        minilm,
        {"calibration": Dataset("calib", texts[0]), "evaluation": Dataset("held", texts[1])},
    )
    technique = registry.get("quantize.accuracy_aware")
    result = technique.apply(minilm, registry.parse_config(technique.name, config), ctx)
    report = result.report
    assert report["transformer"]["used"] and report["metric"] == "cosine_mean"
    linear = set(linear_layers(load_model(minilm.path)))
    assert len(report["sensitivity"]) == 2 and {e["node"] for e in report["sensitivity"]} <= linear
    assert not set(report["not_analyzed"]) & set(activation_matmuls(load_model(minilm.path)))
    assert report["budget_ok"] and report["quality"]["cosine_mean"] >= 0.99


# --------------------------------------------------------------------------- graph rewrites


def _save(tmp_path: Path, nodes: list, inits: list, name: str = "m.onnx") -> Path:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 8])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / name))
    return tmp_path / name


def _block(tmp_path: Path, residual: bool) -> Path:
    """LayerNorm -> two MatMuls (+ the LayerNorm output as a residual when asked)."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=8).astype(np.float32) + 1, "gamma"),
        numpy_helper.from_array(rng.normal(size=8).astype(np.float32), "beta"),
        numpy_helper.from_array(rng.normal(size=(8, 8)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(size=(8, 8)).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["n"], name="ln"),
        helper.make_node("MatMul", ["n", "w1"], ["a"], name="mm1"),
        helper.make_node("MatMul", ["n", "w2"], ["b"], name="mm2"),
        helper.make_node("Add", ["a", "b"], ["ab"], name="add"),
    ]
    nodes.append(helper.make_node("Add", ["ab", "n" if residual else "ab"], ["y"], name="res"))
    return _save(tmp_path, nodes, inits, f"block{int(residual)}.onnx")


@pytest.mark.parametrize(("residual", "folded"), [(False, 1), (True, 0)])
def test_smooth_quant_is_exact_in_float(tmp_path, residual, folded) -> None:
    from compressors.quantization.smooth_quant import channel_absmax, smooth

    path = _block(tmp_path, residual)
    x = {"x": (np.random.default_rng(1).normal(size=(6, 4, 8)) * 3).astype(np.float32)}
    x["x"][:, :, 2] *= 20  # an outlier channel

    def absmax_of(groups):
        return channel_absmax(path, groups, x, tmp_path)

    report = smooth(path, tmp_path / "s.onnx", {"mm1", "mm2"}, 0.5, absmax_of)
    assert (report["folded_into_layernorm"], report["mul_inserted"]) == (folded, 1 - folded)
    assert report["inputs"] == 1 and report["layers"] == 2
    np.testing.assert_allclose(run(tmp_path / "s.onnx", x), run(path, x), rtol=1e-4, atol=1e-4)


def test_residual_readers_get_the_float_tensor_back(tmp_path) -> None:
    """Q/DQ on the LayerNorm output: the MatMuls keep the DQ copy, the residual Add reads
    the float tensor, and nothing else changes."""
    path = _block(tmp_path, residual=True)
    model = load_model(path)
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zero = numpy_helper.from_array(np.array(128, np.uint8), "z")
    model.graph.initializer.extend([scale, zero])
    q = helper.make_node("QuantizeLinear", ["n", "s", "z"], ["nq"], name="q")
    dq = helper.make_node("DequantizeLinear", ["nq", "s", "z"], ["ndq"], name="dq")
    for node in model.graph.node:
        node.input[:] = ["ndq" if i == "n" else i for i in node.input]
    model.graph.node.insert(1, q)
    model.graph.node.insert(2, dq)
    assert keep_float_readers(model, {"MatMul"}) == 1
    res = next(n for n in model.graph.node if n.name == "res")
    assert list(res.input) == ["ab", "n"]
    assert all(n.input[0] == "ndq" for n in model.graph.node if n.op_type == "MatMul")
