"""OnnxRuntimeCpu against a direct onnxruntime.InferenceSession on tiny real ONNX models."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from pareto_core.errors import FailedPrecondition, Internal, InvalidArgument
from pareto_core.tensors import Signature, TensorSpec
from runtimes.onnxruntime_cpu import OnnxRuntimeCpu, OrtOptions, OrtSession, session_options_from
from runtimes.options import host_cpus

OPSET = 17
IR_VERSION = 8


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture
def linear_model(tmp_path: Path) -> Path:
    """y = x @ W + b with x: FP32 [batch, 4] and y: FP32 [batch, 3]."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[weight, bias],
    )
    return _save(graph, tmp_path / "linear.onnx")


@pytest.fixture
def passthrough_model(tmp_path: Path) -> Path:
    """INT64 and BOOL through Identity, BOOL -> FP32 through Cast, unknown dims (None)."""
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["ids"], ["ids_out"]),
            helper.make_node("Identity", ["mask"], ["mask_out"]),
            helper.make_node("Cast", ["mask"], ["mask_f"], to=TensorProto.FLOAT),
        ],
        "passthrough",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, [None, 2]),
            helper.make_tensor_value_info("mask", TensorProto.BOOL, ["n"]),
        ],
        [
            helper.make_tensor_value_info("ids_out", TensorProto.INT64, [None, 2]),
            helper.make_tensor_value_info("mask_out", TensorProto.BOOL, ["n"]),
            helper.make_tensor_value_info("mask_f", TensorProto.FLOAT, ["n"]),
        ],
    )
    return _save(graph, tmp_path / "passthrough.onnx")


def _direct(path: Path, options: dict | None = None) -> ort.InferenceSession:
    return ort.InferenceSession(
        str(path), sess_options=session_options_from(options), providers=["CPUExecutionProvider"]
    )


def test_signature_maps_types_and_dynamic_dims(linear_model: Path, passthrough_model: Path):
    linear = OnnxRuntimeCpu().load(linear_model)
    assert linear.signature == Signature(
        inputs=(TensorSpec("x", "FP32", (-1, 4)),), outputs=(TensorSpec("y", "FP32", (-1, 3)),)
    )
    passthrough = OnnxRuntimeCpu().load(passthrough_model)
    assert passthrough.signature.inputs == (
        TensorSpec("ids", "INT64", (-1, 2)),
        TensorSpec("mask", "BOOL", (-1,)),
    )
    assert [t.datatype for t in passthrough.signature.outputs] == ["INT64", "BOOL", "FP32"]


@pytest.mark.parametrize(
    "options",
    [
        None,
        {"intra_op_threads": 1, "graph_optimization_level": "disable"},
        {"inter_op_threads": 2, "execution_mode": "parallel", "graph_optimization_level": "basic"},
        {"graph_optimization_level": "extended"},
    ],
)
def test_run_matches_direct_session(linear_model: Path, options: dict | None):
    session = OnnxRuntimeCpu().load(linear_model, options)
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    got = session.run({"x": x})
    (want,) = _direct(linear_model, options).run(["y"], {"x": x})
    assert list(got) == ["y"]
    assert got["y"].dtype == np.float32
    assert got["y"].shape == (5, 3)
    assert np.max(np.abs(got["y"] - want)) <= 1e-6


def test_session_options_from_applies_every_field():
    cpus = host_cpus()  # thread options may not ask for more
    so = session_options_from(
        {
            "intra_op_threads": cpus,
            "inter_op_threads": 1,
            "graph_optimization_level": "basic",
            "execution_mode": "parallel",
        }
    )
    assert so.intra_op_num_threads == cpus
    assert so.inter_op_num_threads == 1
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert so.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    default = session_options_from(None)
    assert default.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert default.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL


def test_int64_and_bool_pass_through_exactly(passthrough_model: Path):
    session = OnnxRuntimeCpu().load(passthrough_model)
    ids = np.array([[1, -(2**62)], [2**62, 7]], dtype=np.int64)
    mask = np.array([True, False, True])
    got = session.run({"ids": ids, "mask": mask})
    np.testing.assert_array_equal(got["ids_out"], ids)
    np.testing.assert_array_equal(got["mask_out"], mask)
    assert got["mask_out"].dtype == np.bool_
    np.testing.assert_array_equal(got["mask_f"], np.array([1.0, 0.0, 1.0], dtype=np.float32))


def test_run_returns_only_requested_outputs_in_order(passthrough_model: Path):
    session = OnnxRuntimeCpu().load(passthrough_model)
    inputs = {"ids": np.zeros((1, 2), np.int64), "mask": np.ones(4, np.bool_)}
    got = session.run(inputs, ["mask_f", "ids_out"])
    assert list(got) == ["mask_f", "ids_out"]


def test_run_accepts_read_only_inputs(linear_model: Path):
    session = OnnxRuntimeCpu().load(linear_model)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    frozen = np.frombuffer(x.tobytes(), dtype=np.float32).reshape(2, 4)
    assert not frozen.flags.writeable
    np.testing.assert_array_equal(session.run({"x": frozen})["y"], session.run({"x": x})["y"])


def test_concurrent_runs_share_one_session(linear_model: Path):
    session = OnnxRuntimeCpu().load(linear_model)
    direct = _direct(linear_model)
    rng = np.random.default_rng(2)
    batches = [rng.standard_normal((i + 1, 4)).astype(np.float32) for i in range(8)]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        for _ in range(20):
            results[i] = session.run({"x": batches[i]})["y"]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, x in enumerate(batches):
        assert np.max(np.abs(results[i] - direct.run(["y"], {"x": x})[0])) <= 1e-6


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"intra_op_threads": -1}, "intra_op_threads"),
        ({"inter_op_threads": "many"}, "inter_op_threads"),
        ({"graph_optimization_level": "max"}, "graph_optimization_level"),
        ({"execution_mode": "async"}, "execution_mode"),
        ({"threads": 4}, "threads"),
    ],
)
def test_bad_option_names_the_field(linear_model: Path, options: dict, field: str):
    with pytest.raises(InvalidArgument, match=field):
        OnnxRuntimeCpu().load(linear_model, options)


def test_options_must_be_a_mapping(linear_model: Path):
    with pytest.raises(InvalidArgument, match="mapping"):
        OnnxRuntimeCpu().load(linear_model, [("intra_op_threads", 1)])  # type: ignore[arg-type]


def test_options_are_frozen():
    opts = OrtOptions(intra_op_threads=2)
    with pytest.raises(ValueError, match="frozen"):
        opts.intra_op_threads = 3  # type: ignore[misc]


def test_missing_and_corrupt_model_files(tmp_path: Path):
    with pytest.raises(FailedPrecondition, match="does not exist"):
        OnnxRuntimeCpu().load(tmp_path / "nope.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"this is not a protobuf")
    with pytest.raises(FailedPrecondition, match=r"corrupt\.onnx"):
        OnnxRuntimeCpu().load(corrupt)


def test_bundle_directory_loads_its_single_onnx(linear_model: Path, tmp_path: Path):
    session = OnnxRuntimeCpu().load(linear_model.parent)
    assert isinstance(session, OrtSession)
    (tmp_path / "second.onnx").write_bytes(linear_model.read_bytes())
    with pytest.raises(FailedPrecondition, match=r"exactly one \.onnx"):
        OnnxRuntimeCpu().load(tmp_path)


def test_string_tensor_is_refused_naming_it(tmp_path: Path):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["text"], ["out"])],
        "strings",
        [helper.make_tensor_value_info("text", TensorProto.STRING, [1])],
        [helper.make_tensor_value_info("out", TensorProto.STRING, [1])],
    )
    with pytest.raises(FailedPrecondition, match=r"input 'text' has type tensor\(string\)"):
        OnnxRuntimeCpu().load(_save(graph, tmp_path / "strings.onnx"))


def test_wrong_fixed_dim_at_run_is_invalid_argument(linear_model: Path):
    session = OnnxRuntimeCpu().load(linear_model)
    with pytest.raises(InvalidArgument, match="x"):
        session.run({"x": np.zeros((2, 5), np.float32)})


def test_kernel_failure_is_internal(tmp_path: Path):
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"])],
        "add",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 3]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n", 3]),
        ],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["n", 3])],
    )
    session = OnnxRuntimeCpu().load(_save(graph, tmp_path / "add.onnx"))
    with pytest.raises(Internal, match="Add"):
        session.run({"a": np.zeros((2, 3), np.float32), "b": np.zeros((3, 3), np.float32)})


def test_closed_session_refuses_to_run(linear_model: Path):
    session = OnnxRuntimeCpu().load(linear_model)
    session.close()
    with pytest.raises(FailedPrecondition, match="closed"):
        session.run({"x": np.zeros((1, 4), np.float32)})


def test_describe_and_available():
    runtime = OnnxRuntimeCpu()
    assert runtime.available() is None
    assert runtime.formats == frozenset({"onnx", "onnx_bundle"})
    description = runtime.describe()
    assert description.name == "onnxruntime_cpu"
    assert description.version == ort.__version__
    assert description.device == "cpu"
    assert description.accelerated is False
    assert description.details["providers"] == "CPUExecutionProvider"


def test_thread_options_are_bounded_by_the_hosts_cpus():
    with pytest.raises(InvalidArgument, match=f"at most the {host_cpus()} CPUs of this host"):
        session_options_from({"intra_op_threads": 8000})
