"""Block-wise n-bit weights as ONNX Runtime's contrib ops store them (numpy, no ORT import).

`MatMulNBits` (X @ W with W quantized) and `GatherBlockQuantized` (an embedding lookup in a
quantized table) share one layout: `bits` (4 or 8) per value, values in blocks of
`block_size` along the quantized axis, one float scale per block and an optional uint8 zero
point per block; 4-bit values and zero points are packed two per byte, the first in the low
nibble. Without zero points ORT assumes 2**(bits-1) (8 or 128): the symmetric scheme.

Both ops are com.microsoft contrib ops; onnxruntime 1.32 runs them on the CPU with uint8
data (MatMulNBits: float32/float16 inputs; GatherBlockQuantized: float32/float16 scales,
int32/int64 indices; it also takes int4/uint4 data, which needs opset 21, so uint8 it is).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MS_DOMAIN = "com.microsoft"


@dataclass(frozen=True)
class Blocks:
    """Integer codes [rows, cols] and, per block of `block` columns, scales and zero points
    [rows, cols // block] (zero points None: symmetric)."""

    codes: np.ndarray
    scales: np.ndarray
    zero_points: np.ndarray | None
    bits: int
    block: int

    def dequantized(self) -> np.ndarray:
        rows, cols = self.codes.shape
        zp = (
            np.full(self.scales.shape, 2 ** (self.bits - 1))
            if self.zero_points is None
            else self.zero_points
        )
        blocks = self.codes.reshape(rows, cols // self.block, self.block).astype(np.float64)
        values = (blocks - zp[..., None]) * self.scales[..., None]
        return values.reshape(rows, cols)


def block_grid(
    blocks: np.ndarray, bits: int, symmetric: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """(scales, zero points) of the last axis of `blocks` [..., block]: round to nearest on
    [min, max] (asymmetric, zero always representable) or [-amax, amax] (symmetric)."""
    qmax = 2**bits - 1
    if symmetric:
        scales = np.abs(blocks).max(axis=-1) / (2 ** (bits - 1) - 1)
        return np.where(scales > 0, scales, 1.0), None
    low = np.minimum(blocks.min(axis=-1), 0.0)
    high = np.maximum(blocks.max(axis=-1), 0.0)
    scales = (high - low) / qmax
    scales = np.where(scales > 0, scales, 1.0)
    return scales, np.clip(np.round(-low / scales), 0, qmax)


def encode(
    values: np.ndarray, scales: np.ndarray, zero_points: np.ndarray | None, bits: int
) -> np.ndarray:
    """Codes of `values` [..., n] on one grid per leading index (scales/zero points [...])."""
    zp = 2 ** (bits - 1) if zero_points is None else zero_points[..., None]
    return np.clip(np.round(values / scales[..., None]) + zp, 0, 2**bits - 1)


def rtn(matrix: np.ndarray, bits: int, block: int, symmetric: bool) -> Blocks:
    """Round-to-nearest codes of `matrix` [rows, cols], blocks along the columns."""
    rows, cols = matrix.shape
    blocks = np.asarray(matrix, np.float64).reshape(rows, cols // block, block)
    scales, zero_points = block_grid(blocks, bits, symmetric)
    codes = encode(blocks, scales, zero_points, bits).reshape(rows, cols)
    return Blocks(codes.astype(np.uint8), scales, zero_points, bits, block)


def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """uint8 storage of `codes` along the last axis (two 4-bit values per byte, low first;
    an odd count gets a zero nibble)."""
    codes = np.asarray(codes, np.uint8)
    if bits == 8:
        return codes
    if codes.shape[-1] % 2:
        codes = np.concatenate([codes, np.zeros((*codes.shape[:-1], 1), np.uint8)], axis=-1)
    return (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)


def matmul_nbits(
    node: Any, weight_shape: tuple[int, int], blocks: Blocks, accuracy_level: int, dtype: Any
) -> tuple[Any, list[Any]]:
    """A MatMulNBits node replacing MatMul `node` (X @ W, W [K, N]) with `blocks` of W^T
    [N, K], and its initializers."""
    from onnx import helper, numpy_helper

    k, n = weight_shape
    k_blocks = k // blocks.block
    base = node.input[1]
    data = pack(blocks.codes.reshape(n, k_blocks, blocks.block), blocks.bits)
    inits = [
        numpy_helper.from_array(data, f"{base}_Q{blocks.bits}G{blocks.block}"),
        numpy_helper.from_array(blocks.scales.astype(dtype).reshape(-1), f"{base}_scales"),
    ]
    if blocks.zero_points is not None:
        zero_points = pack(blocks.zero_points.astype(np.uint8), blocks.bits)
        inits.append(numpy_helper.from_array(zero_points.reshape(-1), f"{base}_zero_points"))
    quantized = helper.make_node(
        "MatMulNBits",
        [node.input[0], *(init.name for init in inits)],
        list(node.output),
        name=f"{node.name}_Q{blocks.bits}",
        domain=MS_DOMAIN,
        accuracy_level=accuracy_level,
        K=k,
        N=n,
        bits=blocks.bits,
        block_size=blocks.block,
    )
    return quantized, inits


def gather_block_quantized(node: Any, blocks: Blocks, dtype: Any) -> tuple[Any, list[Any]]:
    """A GatherBlockQuantized node replacing Gather `node` (axis 0) of a table [rows, dim]
    quantized as `blocks` (blocks along dim), and its initializers."""
    from onnx import helper, numpy_helper

    base = node.input[0]
    inits = [
        numpy_helper.from_array(pack(blocks.codes, blocks.bits), f"{base}_Q{blocks.bits}"),
        numpy_helper.from_array(blocks.scales.astype(dtype), f"{base}_scales"),
    ]
    if blocks.zero_points is not None:
        zero_points = pack(blocks.zero_points.astype(np.uint8), blocks.bits)
        inits.append(numpy_helper.from_array(zero_points, f"{base}_zero_points"))
    names = [inits[0].name, node.input[1], inits[1].name] + [i.name for i in inits[2:]]
    quantized = helper.make_node(
        "GatherBlockQuantized",
        names,
        list(node.output),
        name=f"{node.name}_Q{blocks.bits}",
        domain=MS_DOMAIN,
        gather_axis=0,
        quantize_axis=1,
        block_size=blocks.block,
        bits=blocks.bits,
    )
    return quantized, inits


def cpu_kernel(op_type: str, data_type: str = "tensor(uint8)") -> bool:
    """Whether the installed onnxruntime has a CPU kernel for contrib op `op_type` taking
    `data_type` weights (its T1 or T2)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

    for kernel in ort_state.get_all_opkernel_def():
        if kernel.op_name != op_type or kernel.provider != "CPUExecutionProvider":
            continue
        types = kernel.type_constraints
        if data_type in types.get("T1", []) + types.get("T2", []):
            return True
    return False
