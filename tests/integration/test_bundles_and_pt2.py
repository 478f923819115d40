"""The other accepted formats through the real server: ONNX bundles with external data
(served) and torch.export archives (stored with their signature, never unpickled)."""

from __future__ import annotations

import tarfile

import numpy as np
import onnx
import onnxruntime as ort
import torch
import tritonclient.grpc as tc

from pareto.v1 import common_pb2
from tests.helpers.torch_modules import TwoLayer


def test_onnx_bundle_with_external_data_is_served(client, triton, digits_model, tmp_path):
    model = onnx.load(str(digits_model.path))
    folder = tmp_path / "bundle"
    folder.mkdir()
    onnx.save_model(
        model,
        str(folder / "digits.onnx"),
        save_as_external_data=True,
        location="digits.bin",
        size_threshold=0,
    )
    archive = tmp_path / "digits.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=".")
    stored = client.upload(archive, "bundled")
    assert stored.format == common_pb2.MODEL_FORMAT_ONNX_BUNDLE
    pixels = digits_model.X_test[:4].astype(np.float32)
    tensor = tc.InferInput("pixels", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels)
    logits = triton.infer("bundled", [tensor]).as_numpy("logits")
    session = ort.InferenceSession(str(digits_model.path), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {"pixels": pixels})
    assert np.max(np.abs(logits - expected)) <= 1e-5


def test_torch_export_archive_is_stored_with_signature(client, tmp_path):
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(
        TwoLayer(), (torch.zeros(2, 8),), dynamic_shapes={"features": {0: batch}}
    )
    path = tmp_path / "two_layer.pt2"
    torch.export.save(program, path)
    stored = client.upload(path, "exported")
    assert stored.format == common_pb2.MODEL_FORMAT_TORCH_EXPORT
    assert [(t.datatype, list(t.shape)) for t in stored.inputs] == [("FP32", [-1, 8])]
    assert [(t.datatype, list(t.shape)) for t in stored.outputs] == [("FP32", [-1, 3])]
