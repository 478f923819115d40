"""torch_cuda without a GPU: options, warm-up plan, dtype mapping, what the host lacks
(read without importing torch), the refusal to load, and the session's numpy <-> torch
path run on the CPU. The GPU test (digits CNN .pt2 vs ONNX Runtime) is marked `gpu`."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from pareto_core.errors import FailedPrecondition, InvalidArgument
from pareto_core.tensors import KSERVE_TO_NUMPY, Signature, TensorSpec
from runtimes import cuda_probe, torch_cuda
from runtimes.cuda_probe import CPU_BUILD, NO_DEVICE, missing_requirement
from runtimes.options import parse_options
from runtimes.registry import get_runtime
from runtimes.torch_cuda import (
    TorchCuda,
    TorchCudaOptions,
    kserve_datatype,
    torch_dtype,
    warmup_plan,
)

DIGITS = Signature((TensorSpec("pixels", "FP32", (-1, 1, 8, 8)),), ())
TEXT = Signature(
    (TensorSpec("input_ids", "INT64", (-1, -1)), TensorSpec("attention_mask", "INT64", (-1, -1))),
    (),
)


def opts(**kwargs) -> TorchCudaOptions:
    return parse_options("torch_cuda", TorchCudaOptions, kwargs)


def test_options_are_validated_with_the_field_named():
    assert opts() == TorchCudaOptions(device_id=0, compile=False, warmup_iters=3)
    with pytest.raises(InvalidArgument, match="unknown torch_cuda option 'mode'"):
        opts(mode="max-autotune")
    with pytest.raises(InvalidArgument, match="'device_id'"):
        opts(device_id=-1)
    with pytest.raises(InvalidArgument, match="'warmup_iters'"):
        opts(warmup_iters=0)
    with pytest.raises(InvalidArgument, match="dim below 1"):
        opts(warmup_shapes={"pixels": [[0, 1, 8, 8]]})
    with pytest.raises(InvalidArgument, match="same number of warm-up shapes"):
        opts(warmup_shapes={"input_ids": [[1, 8]], "attention_mask": [[1, 8], [4, 8]]})
    with pytest.raises(InvalidArgument, match="torch_cuda options must be a mapping"):
        parse_options("torch_cuda", TorchCudaOptions, ["compile"])


def test_warmup_plan_from_signature_and_from_options():
    assert warmup_plan(DIGITS, opts()) == []  # eager: nothing to record
    assert warmup_plan(DIGITS, opts(compile=True)) == [{"pixels": (1, 1, 8, 8)}]
    given = {"pixels": [[1, 1, 8, 8], [8, 1, 8, 8]]}
    assert warmup_plan(DIGITS, opts(compile=True, warmup_shapes=given)) == [
        {"pixels": (1, 1, 8, 8)},
        {"pixels": (8, 1, 8, 8)},
    ]
    shapes = {"input_ids": [[1, 32], [8, 32]], "attention_mask": [[1, 32], [8, 32]]}
    plan = warmup_plan(TEXT, opts(compile=True, warmup_shapes=shapes))
    assert plan[1] == {"input_ids": (8, 32), "attention_mask": (8, 32)}


@pytest.mark.parametrize(
    ("signature", "shapes", "message"),
    [
        (TEXT, {}, r"dynamic dims \[-1, -1\] beyond the batch.*warmup_shapes.input_ids"),
        (DIGITS, {"pixel": [[1, 1, 8, 8]]}, r"unknown inputs \['pixel'\]"),
        (TEXT, {"input_ids": [[1, 8]]}, r"lacks inputs \['attention_mask'\]"),
        (DIGITS, {"pixels": [[1, 8, 8]]}, "rank 3, the input has rank 4"),
        (DIGITS, {"pixels": [[1, 3, 8, 8]]}, "dim 1 must be 1"),
    ],
)
def test_bad_warmup_shapes_are_invalid_argument(signature, shapes, message):
    with pytest.raises(InvalidArgument, match=message):
        warmup_plan(signature, opts(compile=True, warmup_shapes=shapes))


def test_dtype_mapping_covers_every_served_datatype():
    import torch

    assert set(torch_cuda.KSERVE_TO_TORCH) == set(KSERVE_TO_NUMPY)
    for datatype, np_dtype in KSERVE_TO_NUMPY.items():
        dtype = torch_dtype(datatype)
        assert torch.from_numpy(np.zeros(1, np_dtype)).dtype == dtype
        assert kserve_datatype(dtype) == datatype
    assert kserve_datatype("float16") == "FP16"
    with pytest.raises(FailedPrecondition, match="BYTES"):
        torch_dtype("BYTES")
    with pytest.raises(FailedPrecondition, match="bfloat16"):
        kserve_datatype(torch.bfloat16)


def test_cuda_version_is_read_from_torch_version_file():
    assert cuda_probe._assigned("cuda: Optional[str] = None\n", "cuda") is None
    assert cuda_probe._assigned("cuda: Optional[str] = '12.8'\n", "cuda") == "12.8"
    assert cuda_probe._assigned("hip = None\ncuda = '13.0'\n", "cuda") == "13.0"


def test_missing_requirement_says_exactly_what_is_missing(monkeypatch):
    monkeypatch.setattr(cuda_probe, "_torch_cuda_version", lambda: None)
    assert missing_requirement() == "torch has no CUDA support (CPU build)"
    monkeypatch.setattr(cuda_probe, "_torch_cuda_version", lambda: False)
    assert missing_requirement() == "torch is not installed"
    monkeypatch.setattr(cuda_probe, "_torch_cuda_version", lambda: "12.8")
    monkeypatch.setattr(cuda_probe, "_cuda_device_count", lambda: 0)
    assert missing_requirement() == "no CUDA device"
    monkeypatch.setattr(cuda_probe, "_cuda_device_count", lambda: 1)
    assert missing_requirement() is None


@pytest.mark.skipif(missing_requirement() is None, reason="torch with CUDA and a GPU are present")
def test_on_this_host_the_runtime_is_refused_and_says_why(tmp_path):
    runtime = get_runtime("torch_cuda")
    assert isinstance(runtime, TorchCuda) and not runtime.auto_select
    assert runtime.formats == frozenset({"torch_export"})
    assert runtime.capabilities().devices == ("cuda",)
    reason = runtime.available()
    assert reason in (CPU_BUILD, NO_DEVICE)
    import torch

    assert reason == (CPU_BUILD if torch.version.cuda is None else NO_DEVICE)
    described = runtime.describe()
    assert described.device == "none" and not described.accelerated
    assert described.details == {"missing": reason}
    with pytest.raises(FailedPrecondition, match=re.escape(f"not available: {reason}")):
        runtime.load(tmp_path / "model.pt2")
    with pytest.raises(InvalidArgument, match="unknown torch_cuda option"):
        runtime.load(tmp_path / "model.pt2", {"fp16": True})  # options first: a clear 400


def _digits_pt2(tmp_path: Path):
    """The digits CNN (briefly trained) as ONNX and as a .pt2, batch dynamic in both."""
    import torch

    from examples.models import (
        DIGITS_INPUT,
        DIGITS_OUTPUT,
        _onnx_export,
        _train_digits,
        digits_split,
    )

    x_train, x_test, y_train, _ = digits_split()
    module = _train_digits(x_train, y_train, seed=0, epochs=2)
    example = (torch.from_numpy(x_test[:2]),)
    _onnx_export(
        module,
        example,
        tmp_path / "digits.onnx",
        input_names=[DIGITS_INPUT],
        output_names=[DIGITS_OUTPUT],
        dynamic_axes={DIGITS_INPUT: {0: "batch"}, DIGITS_OUTPUT: {0: "batch"}},
    )

    class Digits(torch.nn.Module):  # names the input "pixels", as the ONNX model does
        def __init__(self) -> None:
            super().__init__()
            self.net = module

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return self.net(pixels)

    batch = torch.export.Dim("batch", min=1, max=512)
    program = torch.export.export(Digits().eval(), example, dynamic_shapes={"pixels": {0: batch}})
    torch.export.save(program, tmp_path / "digits.pt2")
    return tmp_path / "digits.onnx", tmp_path / "digits.pt2", x_test


def test_session_io_path_on_cpu(tmp_path):
    """The session code (numpy in, dtype, outputs back, warm-up, close) on a CPU device:
    the same code the GPU path runs, with the module loaded by the restricted loader."""
    import onnxruntime as ort
    import torch
    from torch.export.passes import move_to_device_pass

    from runtimes import pt2_inspect

    onnx_path, pt2_path, x = _digits_pt2(tmp_path)
    program = pt2_inspect.load_restricted(pt2_path)
    signature = torch_cuda._signature(pt2_inspect.signature_json(program))
    assert signature.inputs == (TensorSpec("pixels", "FP32", (-1, 1, 8, 8)),)
    module = move_to_device_pass(program, "cpu").module()
    session = torch_cuda.TorchCudaSession(module, signature, torch.device("cpu"), False)
    session.warm_up(warmup_plan(signature, opts(compile=True)), 2)
    name = signature.outputs[0].name
    got = session.run({"pixels": x.astype(np.float64)})[name]  # cast to the model's FP32
    want = ort.InferenceSession(str(onnx_path)).run(None, {"pixels": x})[0]
    assert got.dtype == np.float32 and got.shape == (len(x), 10)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert session.describe().details["compile"] == "off (eager)"
    with pytest.raises(InvalidArgument, match=r"outside the shapes.*pixels.size\(\)\[0\] <= 512"):
        session.run({"pixels": np.zeros((513, 1, 8, 8), np.float32)})
    session.close()
    with pytest.raises(FailedPrecondition, match="session is closed"):
        session.run({"pixels": x[:1]})


@pytest.mark.gpu
@pytest.mark.skipif(
    missing_requirement() is not None, reason=f"no torch CUDA GPU: {missing_requirement()}"
)
@pytest.mark.parametrize("compiled", [False, True])
def test_digits_pt2_on_gpu_matches_onnxruntime(tmp_path, compiled):
    import onnxruntime as ort

    onnx_path, pt2_path, x = _digits_pt2(tmp_path)
    runtime = TorchCuda()
    options = {"compile": compiled, "warmup_shapes": {"pixels": [[1, 1, 8, 8], [64, 1, 8, 8]]}}
    session = runtime.load(pt2_path, options)
    assert session.device.startswith("cuda:0 (")
    described = runtime.describe()
    assert described.accelerated and described.details["cuda"] != "None"
    assert (described.details["compile"] == "off (eager)") != compiled
    want = ort.InferenceSession(str(onnx_path)).run(None, {"pixels": x})[0]
    name = session.signature.outputs[0].name
    for rows in (1, 64, len(x)):  # warmed-up shapes, then one recorded on first use
        got = session.run({"pixels": x[:rows]})[name]
        np.testing.assert_allclose(got, want[:rows], rtol=1e-3, atol=1e-3)
    again = session.run({"pixels": x[:64]})[name]  # a CUDA-graph replay
    np.testing.assert_allclose(again, want[:64], rtol=1e-3, atol=1e-3)
    session.close()
