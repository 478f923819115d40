"""What a model file holds, without running it: size, gzip size, parameters, sparsity.

* `size_bytes`: the file plus the external-data files its initializers name.
* `compressed_size_bytes`: those bytes through gzip at level 9 (the Measurement contract),
  which is where weight sharing (cluster.kmeans) and unstructured sparsity show.
* `parameters`: elements of the float and integer initializers (int64 ones are left out:
  in ONNX they are shapes, axes and indices, not weights). Quantization scales and zero
  points count, they are stored weights too.
* `sparsity`: the fraction of weight elements that are exactly zero, where weights are the
  initializers of rank >= 2 (matrices and kernels; biases and scales are not weights). An
  integer (quantized) weight counts as zero where it equals its zero point, found from the
  node that consumes it (DequantizeLinear, MatMulInteger, ConvInteger, QLinear*, ...).

A torch.export archive reports the same figures from its state dict.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

GZIP_LEVEL = 9
_CHUNK = 1 << 20
_GZIP_WBITS = 31  # zlib with a gzip header and trailer

# op type -> (index of the weight input, index of its zero-point input, axis of a per-channel
# zero point; None = the weight's last axis).
_ZERO_POINT_INPUTS: dict[str, tuple[int, int, int | None]] = {
    "DequantizeLinear": (0, 2, 1),
    "MatMulInteger": (1, 3, None),
    "ConvInteger": (1, 3, 0),
    "QLinearConv": (3, 5, 0),
    "QLinearMatMul": (3, 5, None),
    "DynamicQuantizeMatMul": (1, 3, None),
    "MatMulIntegerToFloat": (1, 5, None),
}


def gzip_size(paths: list[Path]) -> int:
    """Bytes of the concatenated files after gzip at GZIP_LEVEL, streamed."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
    total = 0
    for path in paths:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                total += len(compressor.compress(chunk))
    return total + len(compressor.flush())


def file_stats(path: Path | str, fmt: str = "onnx") -> dict[str, Any]:
    """size_bytes, compressed_size_bytes, parameters, sparsity of the model at `path`."""
    path = Path(path)
    if fmt == "onnx":
        files, weights, zero_points = _onnx_weights(path)
    else:
        files, weights, zero_points = [path], _torch_export_weights(path), {}
    parameters, zeros, weight_elements = 0, 0, 0
    for name, array in weights.items():
        parameters += array.size
        if array.ndim >= 2:
            weight_elements += array.size
            zeros += int(np.count_nonzero(array == zero_points.get(name, 0)))
    return {
        "size_bytes": sum(p.stat().st_size for p in files),
        "compressed_size_bytes": gzip_size(files),
        "parameters": int(parameters),
        "sparsity": zeros / weight_elements if weight_elements else 0.0,
    }


def _counted(array: np.ndarray) -> bool:
    kind = array.dtype.kind
    return kind == "f" or (kind in "iu" and array.dtype != np.int64)


def _onnx_weights(path: Path) -> tuple[list[Path], dict[str, np.ndarray], dict[str, Any]]:
    """(files the model consists of, counted initializers by name, zero point per weight)."""
    import onnx
    from onnx import external_data_helper, numpy_helper

    model = onnx.load(str(path), load_external_data=False)
    locations = {
        entry.value
        for init in model.graph.initializer
        if external_data_helper.uses_external_data(init)
        for entry in init.external_data
        if entry.key == "location"
    }
    external_data_helper.load_external_data_for_model(model, str(path.parent))
    arrays = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    weights = {name: a for name, a in arrays.items() if _counted(a)}
    files = [path, *(path.parent / loc for loc in sorted(locations))]
    return files, weights, _zero_points(model.graph, arrays)


def _zero_points(graph: Any, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Integer weight name -> its zero point, shaped to broadcast against the weight."""
    found: dict[str, Any] = {}
    for node in graph.node:
        spec = _ZERO_POINT_INPUTS.get(node.op_type)
        if spec is None:
            continue
        w_index, zp_index, axis = spec
        if len(node.input) <= zp_index or node.input[zp_index] not in arrays:
            continue
        weight = arrays.get(node.input[w_index])
        if weight is None or weight.dtype.kind not in "iu":
            continue
        axis = _axis_attribute(node, axis)
        found[node.input[w_index]] = _broadcastable(arrays[node.input[zp_index]], weight, axis)
    return found


def _axis_attribute(node: Any, default: int | None) -> int | None:
    for attribute in node.attribute:
        if attribute.name == "axis":
            return int(attribute.i)
    return default


def _broadcastable(zero_point: np.ndarray, weight: np.ndarray, axis: int | None) -> Any:
    """A scalar, or the per-channel zero points reshaped along `axis` of the weight."""
    if zero_point.size == 1:
        return zero_point.reshape(()).item()
    axis = weight.ndim - 1 if axis is None else axis % weight.ndim
    if weight.shape[axis] != zero_point.size:
        return 0  # a layout we do not know: compare with 0
    shape = [1] * weight.ndim
    shape[axis] = zero_point.size
    return zero_point.reshape(shape)


def _torch_export_weights(path: Path) -> dict[str, np.ndarray]:
    import torch

    from runtimes.pt2_inspect import load_restricted

    program = load_restricted(path)
    arrays = {}
    for name, tensor in {**program.state_dict, **program.constants}.items():
        if isinstance(tensor, torch.Tensor):
            tensor = tensor.detach().cpu()
            if tensor.dtype == torch.bfloat16:
                tensor = tensor.float()
            arrays[name] = tensor.numpy()
    return {name: a for name, a in arrays.items() if _counted(a)}
