"""compressors.evaluate / quality / model_stats on the digits CNN, a perturbed copy of it,
a sparse copy, and a torch.export parent; no timing asserts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from google.protobuf.json_format import ParseDict
from onnx import TensorProto, helper, numpy_helper

from compressors.base import Artifact, Dataset
from compressors.measure.evaluate import EvaluationSettings, check_measurable, evaluate
from compressors.measure.inputs import SYNTHETIC_SEQ_LEN, inputs_for, source_inputs
from compressors.measure.model_stats import file_stats
from compressors.measure.quality import cosine_similarities, cross_entropy, quality_metrics
from examples.models import onnx_accuracy
from pareto.v1 import variants_pb2
from pareto_core.errors import FailedPrecondition, InvalidArgument
from pareto_core.tensors import Signature, TensorSpec

DIGITS = Signature(
    (TensorSpec("pixels", "FP32", (-1, 1, 8, 8)),), (TensorSpec("logits", "FP32", (-1, 10)),)
)
FAST = EvaluationSettings(batch_sizes=(1, 8), iterations=3, warmup=1, measure_memory=False)
MEASUREMENT_FIELDS = {f.name for f in variants_pb2.Measurement.DESCRIPTOR.fields}


def edited_copy(src: Path, dst: Path, edit) -> Artifact:
    """A copy of the ONNX model at `src` with `edit(array)` applied to every >=2-D initializer."""
    model = onnx.load(str(src))
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.ndim >= 2:
            init.CopyFrom(numpy_helper.from_array(edit(array.copy()), init.name))
    onnx.save(model, str(dst))
    return Artifact(dst, "onnx", DIGITS)


def noisy(array: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (array + rng.normal(0, 0.3 * array.std(), array.shape)).astype(np.float32)


def half_zero(array: np.ndarray) -> np.ndarray:
    array[np.abs(array) < np.median(np.abs(array))] = 0
    return array


@pytest.fixture(scope="module")
def digits(digits_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    parent = Artifact(digits_model.path, "onnx", DIGITS)
    perturbed = edited_copy(digits_model.path, root / "noisy.onnx", noisy)
    sparse = edited_copy(digits_model.path, root / "sparse.onnx", half_zero)
    dataset = Dataset("digits", {"pixels": digits_model.X_test}, digits_model.y_test)
    return parent, perturbed, sparse, dataset


@pytest.fixture(scope="module")
def measured(digits):
    parent, perturbed, sparse, dataset = digits
    settings = EvaluationSettings(batch_sizes=(8, 1), iterations=3, warmup=1)
    seen: list[float] = []
    result = evaluate(
        parent, [perturbed, sparse], dataset, settings, lambda f, m, _: seen.append(f)
    )
    return result, seen


def test_every_measurement_has_exactly_the_proto_fields(measured):
    (parent_m, variant_ms), progress = measured
    for m in (parent_m, *variant_ms):
        assert set(m) == MEASUREMENT_FIELDS
        ParseDict(m, variants_pb2.Measurement())  # a valid pareto.v1.Measurement
        assert [e["batch_size"] for e in m["latency"]] == [1, 8]
        for entry in m["latency"]:
            assert 0 < entry["p50_ms"] <= entry["p90_ms"] <= entry["p99_ms"]
            assert entry["throughput_per_s"] > 0
        assert m["memory_bytes"] > 0
    assert progress[0] == 0.0 and progress[-1] == 1.0 and progress == sorted(progress)


def test_the_parent_is_perfectly_faithful_to_itself(measured, digits_model):
    (parent_m, _), _ = measured
    quality = parent_m["quality"]
    assert quality["cosine_mean"] == quality["cosine_min"] == quality["top1_agreement"] == 1.0
    assert quality["max_abs_error"] == 0.0
    expected = onnx_accuracy(digits_model.path, digits_model.X_test, digits_model.y_test)
    assert quality["accuracy"] == pytest.approx(expected)
    assert 0 < quality["loss"] < 1


def test_a_perturbed_copy_is_measured_less_faithful(measured, digits, digits_model):
    (parent_m, (noisy_m, _)), _ = measured
    quality = noisy_m["quality"]
    assert quality["cosine_min"] <= quality["cosine_mean"] < 1.0
    assert quality["max_abs_error"] > 0
    assert quality["top1_agreement"] <= 1.0
    expected = onnx_accuracy(digits[1].path, digits_model.X_test, digits_model.y_test)
    assert quality["accuracy"] == pytest.approx(expected)
    assert noisy_m["size_bytes"] == parent_m["size_bytes"]
    assert noisy_m["parameters"] == parent_m["parameters"]


def test_file_figures_count_parameters_sparsity_and_gzip(measured, digits_model):
    (parent_m, (_, sparse_m)), _ = measured
    model = onnx.load(str(digits_model.path))
    arrays = [numpy_helper.to_array(i) for i in model.graph.initializer]
    assert parent_m["parameters"] == sum(a.size for a in arrays if a.dtype != np.int64)
    assert parent_m["size_bytes"] == digits_model.path.stat().st_size
    assert parent_m["sparsity"] == 0.0
    assert sparse_m["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert sparse_m["compressed_size_bytes"] < parent_m["compressed_size_bytes"]
    assert parent_m["compressed_size_bytes"] < parent_m["size_bytes"]


def test_without_a_dataset_fidelity_is_measured_on_synthetic_inputs(digits):
    parent, perturbed, _, _ = digits
    parent_m, (noisy_m,) = evaluate(parent, [perturbed], None, FAST)
    assert "accuracy" not in parent_m["quality"] and "loss" not in noisy_m["quality"]
    assert parent_m["quality"]["cosine_mean"] == 1.0
    assert noisy_m["quality"]["cosine_mean"] < 1.0
    assert parent_m["memory_bytes"] == 0  # measure_memory=False


def test_synthetic_inputs_fill_dynamic_dims_and_cast_per_model():
    text = Signature(
        (TensorSpec("input_ids", "INT64", (-1, -1)), TensorSpec("mask", "INT64", (-1, -1))),
        (TensorSpec("embedding", "FP32", (-1, 4)),),
    )
    source, labels = source_inputs(text, None, 1000)
    assert labels is None
    assert source["input_ids"].shape[1] == SYNTHETIC_SEQ_LEN and (source["mask"] == 1).all()
    fp16 = Signature((TensorSpec("x", "FP16", (-1, 3)),), (TensorSpec("y", "FP16", (-1, 3)),))
    feed = inputs_for(fp16, {"other_name": np.arange(6, dtype=np.float32).reshape(2, 3)}, 5)
    assert feed["x"].dtype == np.float16 and feed["x"].shape == (5, 3)
    np.testing.assert_array_equal(feed["x"][2], feed["x"][0])  # fewer rows: repeated


def test_quality_functions():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    labels = np.array([0, 2])
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert cross_entropy(logits, labels) == pytest.approx(cross_entropy(probabilities, labels))
    cos = cosine_similarities(np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]), np.zeros((3, 2)))
    np.testing.assert_array_equal(cos, [0.0, 1.0, 0.0])
    q = quality_metrics(-logits, logits, labels)
    assert q["accuracy"] == 0.0 and q["top1_agreement"] == 0.0 and q["cosine_mean"] < 0
    assert set(quality_metrics(np.ones((2, 1)), labels=np.array([0, 1]))) == set()


def test_a_torch_export_parent_runs_in_torch_against_its_onnx_twin(tmp_path):
    import torch

    torch.manual_seed(0)
    linear = torch.nn.Linear(4, 3)
    batch = torch.export.Dim("batch", max=1024)
    ep = torch.export.export(
        torch.nn.Sequential(linear), (torch.randn(2, 4),), dynamic_shapes={"input": {0: batch}}
    )
    pt2 = tmp_path / "tiny.pt2"
    torch.export.save(ep, pt2)
    w, b = linear.weight.detach().numpy(), linear.bias.detach().numpy()
    onnx_path = tmp_path / "twin.onnx"
    onnx.save(gemm_model(w, b), str(onnx_path))
    sig = Signature((TensorSpec("input", "FP32", (-1, 4)),), (TensorSpec("out", "FP32", (-1, 3)),))
    dataset = Dataset("x", {"input": np.random.default_rng(0).normal(size=(20, 4)).astype("f4")})
    parent_m, (twin_m,) = evaluate(
        Artifact(pt2, "torch_export", sig), [Artifact(onnx_path, "onnx", sig)], dataset, FAST
    )
    assert parent_m["parameters"] == twin_m["parameters"] == 15
    assert parent_m["memory_bytes"] == 0 and len(parent_m["latency"]) == 2
    assert twin_m["quality"]["cosine_min"] == pytest.approx(1.0, abs=1e-6)
    assert twin_m["quality"]["max_abs_error"] < 1e-5


def gemm_model(w: np.ndarray, b: np.ndarray, batch: str | int = "batch") -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["input", "W", "B"], ["out"], transB=1)],
        "twin",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [batch, 3])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_a_fixed_batch_variant_is_timed_only_at_its_batch_size(tmp_path):
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(3, 4)).astype("f4"), rng.normal(size=3).astype("f4")
    onnx.save(gemm_model(w, b), str(tmp_path / "dynamic.onnx"))
    onnx.save(gemm_model(w, b, batch=4), str(tmp_path / "fixed.onnx"))
    sig = Signature((TensorSpec("input", "FP32", (-1, 4)),), (TensorSpec("out", "FP32", (-1, 3)),))
    fixed_sig = Signature((TensorSpec("input", "FP32", (4, 4)),), sig.outputs)
    dataset = Dataset("x", {"input": rng.normal(size=(10, 4)).astype("f4")})
    settings = EvaluationSettings(batch_sizes=(1, 4), iterations=2, warmup=0, measure_memory=False)
    parent_m, (fixed_m,) = evaluate(
        Artifact(tmp_path / "dynamic.onnx", "onnx", sig),
        [Artifact(tmp_path / "fixed.onnx", "onnx", fixed_sig)],
        dataset,
        settings,
    )
    assert [e["batch_size"] for e in parent_m["latency"]] == [4]
    assert [e["batch_size"] for e in fixed_m["latency"]] == [4]
    assert fixed_m["quality"]["max_abs_error"] < 1e-5  # the same function, run 4 rows at a time


@pytest.mark.parametrize(
    ("field", "value"), [("iterations", 0), ("batch_sizes", ()), ("threads", 0)]
)
def test_nonsense_settings_are_invalid_arguments(field, value):
    with pytest.raises(InvalidArgument, match=rf"evaluation\.{field}: expected .*, got"):
        EvaluationSettings(**{field: value})


def test_quantized_weights_count_zero_where_they_equal_their_zero_point(tmp_path):
    weight = np.array([[3, 3], [5, 7]], dtype=np.uint8)  # zero point 3: half of it is zero
    graph = helper.make_graph(
        [
            helper.make_node("DequantizeLinear", ["Wq", "scale", "zp"], ["W"]),
            helper.make_node("MatMul", ["X", "W"], ["Y"]),
        ],
        "q",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", 2])],
        initializer=[
            numpy_helper.from_array(weight, "Wq"),
            numpy_helper.from_array(np.array(0.5, np.float32), "scale"),
            numpy_helper.from_array(np.array(3, np.uint8), "zp"),
        ],
    )
    path = tmp_path / "q.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    stats = file_stats(path)
    assert stats["sparsity"] == 0.5 and stats["parameters"] == 6


def test_each_measurement_says_which_runtime_and_device_measured_it(digits):
    parent, perturbed, _, dataset = digits
    parent_m, (variant_m,) = evaluate(parent, [perturbed], dataset, FAST)
    for m in (parent_m, variant_m):
        assert (m["runtime"], m["device"]) == ("onnxruntime_cpu", "cpu")
        ParseDict(m, variants_pb2.Measurement())  # the proto has room for both


def test_a_model_the_runtime_cannot_measure_is_a_failed_precondition(digits):
    parent, *_ = digits
    odd = Artifact(parent.path, "tflite", DIGITS)
    with pytest.raises(FailedPrecondition, match=r"takes .* models, this one is 'tflite'"):
        check_measurable(odd, FAST)
    with pytest.raises(FailedPrecondition, match="'tensorrt_gpu' is not available"):
        check_measurable(parent, EvaluationSettings(runtime="tensorrt_gpu"))
