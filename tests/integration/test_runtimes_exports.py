"""The .pt2 path of edgetpu_tflite (a torch.export archive to int8 .tflite), and Triton
exports of an ONNX bundle (external data travels) and of a .pt2 (refused, says why)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from pareto_cli.client import ParetoClient
from pareto_cli.datasets import upload_dataset
from pareto_cli.main import cli
from runtimes.triton_config import check_repository
from service.serving.targets import Target
from tests.helpers.litert import needs_litert
from tests.helpers.torch_modules import TwoLayer


def _upload_pt2(client: ParetoClient, tmp_path: Path) -> torch.nn.Module:
    torch.manual_seed(0)
    module = TwoLayer().eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(
        module, (torch.zeros(2, 8),), dynamic_shapes={"features": {0: batch}}
    )
    torch.export.save(program, tmp_path / "two_layer.pt2")
    client.upload(tmp_path / "two_layer.pt2", "exported")
    return module


@needs_litert
@pytest.mark.slow
def test_pt2_model_runs_as_int8_tflite(quiet_gateway, tmp_path):
    rng = np.random.default_rng(0)
    features = rng.uniform(-1, 1, (200, 8)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", features=features)
    with ParetoClient(f"127.0.0.1:{quiet_gateway.port}") as client:
        module = _upload_pt2(client, tmp_path)
        upload_dataset(client, tmp_path / "calib.npz", "features-calib")
    servable = quiet_gateway.sessions.resolve("exported")
    options = {"calibration_dataset": "features-calib"}
    x = features[:16]
    with quiet_gateway.sessions.acquire(Target(servable, "edgetpu_tflite", options)) as model:
        got = next(iter(model.session.run({"features": x}).values()))
        assert model.session.device == "cpu-fallback"
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    scale = float(np.abs(want).max())
    assert np.abs(got - want).max() <= 0.05 * scale  # int8: a few quantization steps


def test_export_bundle_keeps_external_data_and_refuses_pt2(
    quiet_gateway,
    digits_model,
    tmp_path,
):
    model = onnx.load(str(digits_model.path))
    folder = tmp_path / "bundle"
    folder.mkdir()
    onnx.save_model(
        model,
        str(folder / "d.onnx"),
        save_as_external_data=True,
        location="d.bin",
        size_threshold=0,
    )
    with tarfile.open(tmp_path / "d.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname=".")
    address = f"127.0.0.1:{quiet_gateway.port}"
    with ParetoClient(address) as client:
        client.upload(tmp_path / "d.tar.gz", "bundled")
        _upload_pt2(client, tmp_path)
    result = CliRunner().invoke(
        cli, ["export", "triton", "bundled", str(tmp_path / "repo"), "--server", address]
    )
    assert result.exit_code == 0, result.output
    version_dir = tmp_path / "repo" / "bundled" / "1"
    assert sorted(p.name for p in version_dir.iterdir()) == ["d.bin", "model.onnx"]
    assert check_repository(tmp_path / "repo" / "bundled") == []
    onnx.checker.check_model(str(version_dir / "model.onnx"))  # external data resolves

    refused = CliRunner().invoke(
        cli, ["export", "triton", "exported", str(tmp_path / "r2"), "--server", address]
    )
    assert refused.exit_code != 0 and "FAILED_PRECONDITION" in refused.output
    assert "torch_export" in refused.output and not (tmp_path / "r2").exists()
