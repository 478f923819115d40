"""A tiny real ONNX model (no torch) for security and fuzz tests.

Inputs: `x` FP32 [-1, 4] and `n` INT64 [-1, 4]; outputs `y = x @ w` FP32 [-1, 2] and
`m = n + n` INT64 [-1, 4].
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from pareto.v1 import common_pb2, models_pb2

WEIGHT = np.arange(8, dtype=np.float32).reshape(4, 2) / 8


def tiny_model_bytes() -> bytes:
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["y"]),
            helper.make_node("Add", ["n", "n"], ["m"]),
        ],
        "tiny",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("n", TensorProto.INT64, ["batch", 4]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info("m", TensorProto.INT64, ["batch", 4]),
        ],
        [numpy_helper.from_array(WEIGHT, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def write_tiny_model(path: Path) -> Path:
    path.write_bytes(tiny_model_bytes())
    return path


def upload_messages(name: str, data: bytes) -> list[models_pb2.UploadModelRequest]:
    header = models_pb2.UploadHeader(
        name=name,
        format=common_pb2.MODEL_FORMAT_ONNX,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    return [models_pb2.UploadModelRequest(header=header), models_pb2.UploadModelRequest(chunk=data)]
