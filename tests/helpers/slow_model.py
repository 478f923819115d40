"""A real ONNX model (no torch) whose run time grows with the batch: for shutdown and load
limit tests, which need requests still running when something happens.

Input `x` FP32 [-1, 256]; output `y` = x through LAYERS MatMuls with a permutation matrix
(each moves every column one place right), so `y` is exactly `expected(x)` and the cost
is LAYERS * 2 * 256 * 256 FLOP per row.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

WIDTH = 256
LAYERS = 64


def write_slow_model(path: Path) -> Path:
    shift = np.roll(np.eye(WIDTH, dtype=np.float32), 1, axis=1)
    weight = numpy_helper.from_array(shift, "shift")
    names = ["x", *(f"h{i}" for i in range(1, LAYERS)), "y"]
    nodes = [helper.make_node("MatMul", [a, "shift"], [b]) for a, b in pairwise(names)]
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", WIDTH])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def rows(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, WIDTH), dtype=np.float32)


def expected(x: np.ndarray) -> np.ndarray:
    return np.roll(x, LAYERS, axis=1)
