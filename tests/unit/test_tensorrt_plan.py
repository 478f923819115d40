"""TensorRT build plan without TensorRT: profiles, user shapes, precision, cache keys, the
shape check of requests, and the clear refusal on hosts without TensorRT or a GPU."""

from __future__ import annotations

import pytest

from pareto_core.errors import FailedPrecondition, InvalidArgument
from pareto_core.tensors import Signature, TensorSpec
from runtimes.tensorrt_gpu import TensorRtGpu, missing_requirement
from runtimes.tensorrt_plan import (
    TensorRtOptions,
    build_key_parts,
    check_in_profile,
    derive_profile,
    has_qdq_nodes,
    precision_flags,
)

DIGITS = Signature((TensorSpec("pixels", "FP32", (-1, 1, 8, 8)),), ())
TEXT = Signature(
    (TensorSpec("input_ids", "INT64", (-1, -1)), TensorSpec("attention_mask", "INT64", (-1, -1))),
    (),
)


def test_dynamic_batch_dim_gets_one_to_max_batch():
    profile = derive_profile(DIGITS, TensorRtOptions(max_batch_size=16))
    assert profile.ranges["pixels"] == ((1, 1, 8, 8), (8, 1, 8, 8), (16, 1, 8, 8))


def test_opt_batch_size_is_used_and_checked():
    profile = derive_profile(DIGITS, TensorRtOptions(max_batch_size=16, opt_batch_size=4))
    assert profile.ranges["pixels"][1] == (4, 1, 8, 8)
    with pytest.raises(InvalidArgument, match="opt_batch_size"):
        derive_profile(DIGITS, TensorRtOptions(max_batch_size=4, opt_batch_size=8))


def test_other_dynamic_dims_need_user_shapes():
    with pytest.raises(InvalidArgument, match=r"input_ids.*shapes\.input_ids"):
        derive_profile(TEXT, TensorRtOptions())


def test_user_shapes_are_taken_and_validated():
    shapes = {"min": [1, 8], "opt": [4, 64], "max": [8, 128]}
    options = TensorRtOptions(shapes={"input_ids": shapes, "attention_mask": shapes})
    profile = derive_profile(TEXT, options)
    assert profile.ranges["input_ids"] == ((1, 8), (4, 64), (8, 128))
    with pytest.raises(InvalidArgument, match="min <= opt <= max"):
        bad = {"min": [1, 64], "opt": [4, 8], "max": [8, 128]}
        derive_profile(TEXT, TensorRtOptions(shapes={"input_ids": bad}))


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"min": [1, 1, 8], "opt": [1, 1, 8], "max": [1, 1, 8]}, "rank 3"),
        (
            {"min": [1, 2, 8, 8], "opt": [1, 2, 8, 8], "max": [1, 2, 8, 8]},
            "dim 1 must be fixed at 1",
        ),
        ({"min": [0, 1, 8, 8], "opt": [1, 1, 8, 8], "max": [1, 1, 8, 8]}, "dim 0 must be >= 1"),
    ],
)
def test_user_shapes_must_fit_the_model(given, message):
    with pytest.raises(InvalidArgument, match=message):
        derive_profile(DIGITS, TensorRtOptions(shapes={"pixels": given}))


def test_unknown_input_in_shapes_is_named():
    shapes = {"min": [1], "opt": [1], "max": [1]}
    with pytest.raises(InvalidArgument, match=r"\['nope'\].*pixels"):
        derive_profile(DIGITS, TensorRtOptions(shapes={"nope": shapes}))


def test_requests_outside_the_profile_name_the_allowed_range():
    profile = derive_profile(DIGITS, TensorRtOptions(max_batch_size=16))
    check_in_profile({"pixels": (16, 1, 8, 8)}, profile)
    with pytest.raises(
        InvalidArgument, match=r"'pixels' shape \[17, 1, 8, 8\].*\[1, 1, 8, 8\] to \[16, 1, 8, 8\]"
    ):
        check_in_profile({"pixels": (17, 1, 8, 8)}, profile)
    with pytest.raises(InvalidArgument, match="outside"):
        check_in_profile({"pixels": (1, 8, 8)}, profile)


@pytest.mark.parametrize(
    ("fp16", "int8", "qdq", "fast", "flags"),
    [
        (False, True, False, True, []),
        (True, True, False, True, ["FP16"]),
        (True, True, False, False, []),  # no fast fp16 on this GPU: not asked of the builder
        (False, True, True, True, ["INT8"]),  # explicit quantization from the Q/DQ graph
        (True, False, True, True, ["FP16"]),
        (True, True, True, True, ["FP16", "INT8"]),
    ],
)
def test_precision_flags(fp16, int8, qdq, fast, flags):
    assert precision_flags(TensorRtOptions(fp16=fp16, int8=int8), qdq, fast) == flags


def test_qdq_detection():
    assert has_qdq_nodes({"Conv", "QuantizeLinear", "DequantizeLinear"})
    assert not has_qdq_nodes({"Conv", "Relu"})


def test_cache_key_changes_with_gpu_tensorrt_and_options():
    options = TensorRtOptions()
    base = build_key_parts(options, "10.0.1", "NVIDIA H100", "9.0")
    assert build_key_parts(options, "10.0.1", "NVIDIA H100", "9.0") == base
    assert build_key_parts(options, "10.1.0", "NVIDIA H100", "9.0") != base
    assert build_key_parts(options, "10.0.1", "NVIDIA A100", "8.0") != base
    assert build_key_parts(TensorRtOptions(fp16=True), "10.0.1", "NVIDIA H100", "9.0") != base


def test_options_are_validated_with_field_names():
    from runtimes.options import parse_options

    with pytest.raises(InvalidArgument, match="unknown tensorrt_gpu option 'fp8'"):
        parse_options("tensorrt_gpu", TensorRtOptions, {"fp8": True})
    with pytest.raises(InvalidArgument, match="'workspace_bytes'"):
        parse_options("tensorrt_gpu", TensorRtOptions, {"workspace_bytes": 10})


@pytest.mark.skipif(missing_requirement() is None, reason="TensorRT and a GPU are present")
def test_without_tensorrt_or_gpu_the_runtime_says_what_is_missing(tmp_path):
    runtime = TensorRtGpu()
    reason = runtime.available()
    assert reason in (
        "TensorRT Python package not installed (pip install tensorrt on a CUDA host)",
        "cuda-python package not installed (needed for device buffers and streams)",
        "no CUDA device",
    )
    assert runtime.describe().device == "none" and not runtime.describe().accelerated
    with pytest.raises(FailedPrecondition, match="not available"):
        runtime.load(tmp_path / "model.plan")


@pytest.mark.gpu
@pytest.mark.skipif(
    missing_requirement() is not None, reason=f"no TensorRT GPU: {missing_requirement()}"
)
def test_engine_build_and_inference_on_gpu(tmp_path, digits_model):
    import numpy as np
    import onnxruntime as ort

    from runtimes.artifacts import ArtifactCache

    runtime = TensorRtGpu()
    cache = ArtifactCache(tmp_path / "artifacts")
    engine = cache.prepare(runtime, "0" * 64, digits_model.path, {"max_batch_size": 8})
    assert cache.prepare(runtime, "0" * 64, digits_model.path, {"max_batch_size": 8}) == engine
    session = runtime.load(engine, {"max_batch_size": 8})
    x = digits_model.X_test[:8]
    want = ort.InferenceSession(str(digits_model.path)).run(None, {"pixels": x})[0]
    np.testing.assert_allclose(session.run({"pixels": x})["logits"], want, rtol=1e-3, atol=1e-3)
    with pytest.raises(InvalidArgument, match=r"\[1, 1, 8, 8\] to \[8, 1, 8, 8\]"):
        session.run({"pixels": np.zeros((9, 1, 8, 8), np.float32)})
    session.close()
