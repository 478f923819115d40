"""Selectable runtimes against a real gateway: the same model on onnxruntime_cpu,
edgetpu_tflite (int8 .tflite on the CPU interpreter: "cpu-fallback", no EdgeTPU here) and
triton_remote (a SECOND Pareto process speaking KServe v2); tensorrt_gpu refused on this
host; ListRuntimes, `pareto runtimes` and `pareto export triton`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from examples.models import BuiltModel, digits_split
from pareto.v1 import deployments_pb2, deployments_pb2_grpc, runtimes_pb2, runtimes_pb2_grpc
from pareto_cli.client import ParetoClient
from pareto_cli.datasets import upload_dataset
from pareto_cli.main import cli
from pareto_core.errors import FailedPrecondition, Unavailable
from runtimes.triton_config import check_repository
from service import metrics
from service.server import GatewayServer
from service.serving.targets import Target
from tests.helpers.litert import needs_litert
from tests.helpers.serve_process import start_server
from tests.helpers.tiny_model import write_tiny_model


@pytest.fixture
def remote(tmp_path: Path, digits_model: BuiltModel) -> Iterator[str]:
    """A second Pareto gateway process serving the digits model: the 'remote Triton'."""
    process, address = start_server(tmp_path / "remote")
    try:
        with ParetoClient(address) as c:
            c.upload(digits_model.path, "digits")
        yield address
    finally:
        process.terminate()
        process.wait(timeout=30)


def _upload_digits(gateway: GatewayServer, model: BuiltModel, tmp_path: Path) -> None:
    x_train, _, _, _ = digits_split()
    np.savez(tmp_path / "calib.npz", pixels=x_train[:200])
    with ParetoClient(f"127.0.0.1:{gateway.port}") as c:
        c.upload(model.path, "digits")
        upload_dataset(c, tmp_path / "calib.npz", "digits-calib")


def _run(gateway: GatewayServer, runtime: str, options: dict, x: np.ndarray) -> np.ndarray:
    servable = gateway.sessions.resolve("digits")
    with gateway.sessions.acquire(Target(servable, runtime, options)) as model:
        return model.session.run({"pixels": x})["logits"]


@needs_litert
@pytest.mark.slow
def test_same_model_on_three_runtimes(quiet_gateway, remote, digits_model, tmp_path):
    _upload_digits(quiet_gateway, digits_model, tmp_path)
    _, x, _, y = digits_split()
    ort = _run(quiet_gateway, "onnxruntime_cpu", {"intra_op_threads": 1}, x)
    triton = _run(quiet_gateway, "triton_remote", {"url": remote}, x)
    int8 = _run(quiet_gateway, "edgetpu_tflite", {"calibration_dataset": "digits-calib"}, x)

    np.testing.assert_allclose(triton, ort, rtol=1e-5, atol=1e-5)  # same fp32 model remotely
    fp32_acc = float((ort.argmax(1) == y).mean())
    int8_acc = float((int8.argmax(1) == y).mean())
    assert fp32_acc - int8_acc <= 0.01, (fp32_acc, int8_acc)  # at most 1 pp lost to int8
    assert float((int8.argmax(1) == ort.argmax(1)).mean()) >= 0.97

    edgetpu = quiet_gateway.sessions.resolve("digits")
    loaded = {m.runtime.name: m for m in quiet_gateway.sessions.loaded()}
    assert loaded["edgetpu_tflite"].session.device == "cpu-fallback"
    assert loaded["edgetpu_tflite"].session.report["float_ops"] == []
    assert loaded["edgetpu_tflite"].labels == ("digits", "v1", "edgetpu_tflite")
    assert edgetpu.format == "onnx"
    text = _metrics_text(quiet_gateway)
    info = [line for line in text.splitlines() if line.startswith("pareto_runtime_info{")]
    assert any('device="cpu-fallback"' in i and 'runtime="edgetpu_tflite"' in i for i in info)
    assert any('device="remote"' in i and 'runtime="triton_remote"' in i for i in info)
    assert 'pareto_runtime_build_duration_seconds_count{runtime="edgetpu_tflite"}' in text


def _metrics_text(gateway: GatewayServer) -> str:
    from urllib.request import urlopen

    with urlopen(f"http://127.0.0.1:{gateway.metrics_port}/metrics") as response:
        return response.read().decode()


@needs_litert
@pytest.mark.slow
def test_int8_artifact_is_built_once_then_reused(quiet_gateway, digits_model, tmp_path):
    _upload_digits(quiet_gateway, digits_model, tmp_path)
    misses = metrics.RUNTIME_CACHE_MISSES.labels("edgetpu_tflite")
    hits = metrics.RUNTIME_CACHE_HITS.labels("edgetpu_tflite")
    before = (misses._value.get(), hits._value.get())
    options = {"calibration_dataset": "digits-calib", "calibration_samples": 50}
    x = digits_split()[1][:4]
    first = _run(quiet_gateway, "edgetpu_tflite", options, x)
    servable = quiet_gateway.sessions.resolve("digits")
    assert quiet_gateway.sessions.unload_target(Target(servable, "edgetpu_tflite", options))
    second = _run(quiet_gateway, "edgetpu_tflite", options, x)
    np.testing.assert_array_equal(first, second)
    assert (misses._value.get(), hits._value.get()) == (before[0] + 1, before[1] + 1)
    artifacts = [p for p in (tmp_path / "data" / "artifacts").iterdir() if p.name != "tmp"]
    assert len(artifacts) == 1 and (artifacts[0] / "model.tflite").is_file()


def test_tensorrt_on_this_host_is_a_clear_failed_precondition(quiet_gateway, digits_model):
    with ParetoClient(f"127.0.0.1:{quiet_gateway.port}") as c:
        c.upload(digits_model.path, "digits")
    with pytest.raises(FailedPrecondition, match=r"tensorrt_gpu.*(TensorRT|CUDA)"):
        _run(quiet_gateway, "tensorrt_gpu", {}, np.zeros((1, 1, 8, 8), np.float32))
    assert quiet_gateway.sessions.loaded() == []


def test_torch_cuda_on_this_host_is_a_clear_failed_precondition(quiet_gateway, tmp_path):
    """A .pt2 asked for on torch_cuda: refused saying what is missing, never run elsewhere;
    without a runtime name nothing picks torch_cuda for the format."""
    import torch

    from runtimes.cuda_probe import missing_requirement

    missing = missing_requirement()
    if missing is None:
        pytest.skip("torch with CUDA and a GPU are present: torch_cuda is available here")
    program = torch.export.export(
        torch.nn.Sequential(torch.nn.Linear(8, 3)).eval(),
        (torch.zeros(2, 8),),
        dynamic_shapes=({0: torch.export.Dim("batch", max=64)},),
    )
    torch.export.save(program, tmp_path / "linear.pt2")
    with ParetoClient(f"127.0.0.1:{quiet_gateway.port}") as c:
        c.upload(tmp_path / "linear.pt2", "exported")
    servable = quiet_gateway.sessions.resolve("exported")
    assert servable.format == "torch_export"
    pattern = r"runtime 'torch_cuda' is not available on this host: " + re.escape(missing)
    with pytest.raises(FailedPrecondition, match=pattern):
        quiet_gateway.sessions.load(Target(servable, "torch_cuda", {"compile": True}))
    with pytest.raises(FailedPrecondition, match=r"by name: \[.*'torch_cuda'"):
        quiet_gateway.sessions.load(Target(servable))
    with grpc.insecure_channel(f"127.0.0.1:{quiet_gateway.port}") as channel:  # over gRPC
        stub = deployments_pb2_grpc.DeploymentServiceStub(channel)
        target = deployments_pb2.Target(model_version="1", weight=100, runtime="torch_cuda")
        request = deployments_pb2.CreateDeploymentRequest(
            name="exported", model="exported", targets=[target]
        )
        with pytest.raises(grpc.RpcError) as err:
            stub.CreateDeployment(request)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert re.search(pattern, err.value.details()), err.value.details()
    assert quiet_gateway.sessions.loaded() == []


def test_triton_remote_retries_unavailable_then_says_so(quiet_gateway, digits_model):
    with ParetoClient(f"127.0.0.1:{quiet_gateway.port}") as c:
        c.upload(digits_model.path, "digits")
    options = {"url": "127.0.0.1:1", "retries": 1, "retry_backoff_s": 0.01, "timeout_s": 2}
    with pytest.raises(Unavailable, match="triton_remote"):
        _run(quiet_gateway, "triton_remote", options, np.zeros((1, 1, 8, 8), np.float32))


def _served_remotely(tmp_path: Path, model_file: Path) -> tuple[object, str]:
    """A second gateway serving `model_file` under the name "digits"."""
    process, address = start_server(tmp_path / "other-remote")
    with ParetoClient(address) as c:
        c.upload(model_file, "digits")
    return process, address


def test_triton_remote_refuses_a_remote_model_that_is_another_one(
    quiet_gateway, remote, digits_model, tmp_path
):
    with ParetoClient(f"127.0.0.1:{quiet_gateway.port}") as c:
        c.upload(digits_model.path, "digits")
    x = digits_model.X_test[:2].astype(np.float32)
    _run(quiet_gateway, "triton_remote", {"url": remote}, x)  # the same model: served
    # Same name and signature, other weights: the remote reports its file's sha256.
    model = onnx.load(str(digits_model.path))
    model.graph.initializer[0].raw_data = bytes(len(model.graph.initializer[0].raw_data))
    onnx.save(model, str(tmp_path / "changed.onnx"))
    process, changed = _served_remotely(tmp_path / "a", tmp_path / "changed.onnx")
    try:
        with pytest.raises(FailedPrecondition, match="is another model"):
            _run(quiet_gateway, "triton_remote", {"url": changed}, x)
    finally:
        process.terminate()
        process.wait(timeout=30)
    # Another signature under the same name.
    process, other = _served_remotely(tmp_path / "b", write_tiny_model(tmp_path / "tiny.onnx"))
    try:
        with pytest.raises(FailedPrecondition, match="is not the model to serve"):
            _run(quiet_gateway, "triton_remote", {"url": other}, x)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_list_runtimes_rpc_and_cli(quiet_gateway):
    address = f"127.0.0.1:{quiet_gateway.port}"
    with grpc.insecure_channel(address) as channel:
        stub = runtimes_pb2_grpc.RuntimeServiceStub(channel)
        found = {r.name: r for r in stub.ListRuntimes(runtimes_pb2.ListRuntimesRequest()).runtimes}
    assert set(found) >= {
        "onnxruntime_cpu",
        "tensorrt_gpu",
        "torch_cuda",
        "edgetpu_tflite",
        "triton_remote",
    }
    assert found["onnxruntime_cpu"].available and found["onnxruntime_cpu"].device == "cpu"
    trt = found["tensorrt_gpu"]
    if not trt.available:
        assert "TensorRT" in trt.unavailable_reason or "CUDA" in trt.unavailable_reason
    if not found["torch_cuda"].available:
        assert found["torch_cuda"].unavailable_reason in (
            "torch has no CUDA support (CPU build)",
            "no CUDA device",
        )
    assert found["edgetpu_tflite"].device in ("edgetpu", "cpu-fallback")
    assert found["edgetpu_tflite"].accelerated == (found["edgetpu_tflite"].device == "edgetpu")
    result = CliRunner().invoke(cli, ["runtimes", "--json", "--server", address])
    assert result.exit_code == 0, result.output
    assert {r["name"] for r in json.loads(result.output)} == set(found)


def test_export_triton_repository(quiet_gateway, digits_model, tmp_path):
    address = f"127.0.0.1:{quiet_gateway.port}"
    with ParetoClient(address) as c:
        c.upload(digits_model.path, "digits")
    args = ["export", "triton", "digits", str(tmp_path / "repo"), "--server", address]
    result = CliRunner().invoke(cli, [*args, "--kind", "gpu", "--preferred-batch-size", "4"])
    assert result.exit_code == 0, result.output
    model_dir = tmp_path / "repo" / "digits"
    assert check_repository(model_dir) == []
    assert (model_dir / "1" / "model.onnx").read_bytes() == digits_model.path.read_bytes()
    config = (model_dir / "config.pbtxt").read_text()
    assert (
        'name: "tensorrt"' in config
        and "KIND_GPU" in config
        and "preferred_batch_size: 4" in config
    )

    again = CliRunner().invoke(cli, args)  # never overwrites, leaves nothing behind
    assert again.exit_code != 0 and "already exists" in again.output
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["digits"]

    args = ["export", "triton", "nope", str(tmp_path / "r2"), "--server", address]
    missing = CliRunner().invoke(cli, args)
    assert missing.exit_code != 0 and "NOT_FOUND" in missing.output
    assert not (tmp_path / "r2").exists()
