"""Embedding tables stored in n bits: Gather from a float table -> GatherBlockQuantized, or
-> Gather from a uint8 table + DequantizeLinear.

A text model's token embedding table is often its largest tensor (MiniLM: 30522 x 384, 52%
of the file) and MatMul quantizers leave it float. Looking rows up in a quantized table
costs nothing measurable, so it is stored in 4 or 8 bits too, two ways:

- `quantize_tables`: blocks along the embedding dimension (round to nearest, one scale per
  block of a row: ORT's contrib op GatherBlockQuantized, 4 or 8 bits). Fine-grained, but the
  scales cost 4 bytes per block (MiniLM, 8 bits, block 32: 1.5 MB on 11.7 MB of codes).
- `quantize_tables_per_column`: 8 bits, one scale and zero point per embedding dimension
  (column), the rows gathered as uint8 and dequantized after the lookup (standard ONNX:
  Gather, then DequantizeLinear on axis -1). The scales cost one float per column, and
  per-column ranges follow the outlier dimensions of transformer embeddings.

Tables below `min_rows` rows stay float.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compressors.quantization.nbits import cpu_kernel, gather_block_quantized, rtn

OP = "GatherBlockQuantized"


def runtime_support() -> str | None:
    """None when the installed onnxruntime runs GatherBlockQuantized with uint8 data on the
    CPU, else why not."""
    if cpu_kernel(OP, "tensor(uint8)"):
        return None
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__} has no CPU {OP} kernel for uint8 data"


def _tables(
    model: Any, min_rows: int, max_rows: int | None = None
) -> tuple[list[tuple[Any, np.ndarray]], list[dict]]:
    """(Gather nodes reading a float [rows, dim] initializer on axis 0 with their table,
    tables skipped with the reason); tables of `max_rows` rows or more are left to another
    pass, unreported."""
    from compressors.graph.edit import consumers, get_attribute, initializer_arrays

    graph = model.graph
    arrays, readers = initializer_arrays(graph), consumers(graph)
    found, skipped = [], []
    for node in graph.node:
        table = arrays.get(node.input[0]) if node.op_type == "Gather" else None
        if table is None or table.ndim != 2 or not np.issubdtype(table.dtype, np.floating):
            continue
        name = node.input[0]
        if max_rows is not None and table.shape[0] >= max_rows:
            continue
        if get_attribute(node, "axis", 0) != 0:
            skipped.append({"table": name, "reason": "gathered along axis 1"})
        elif len(readers.get(name, [])) != 1:
            skipped.append({"table": name, "reason": "read by other nodes too"})
        elif table.shape[0] < min_rows:
            skipped.append({"table": name, "reason": f"{table.shape[0]} rows < {min_rows}"})
        else:
            found.append((node, table))
    return found, skipped


def quantize_tables(
    model: Any, bits: int, block: int, symmetric: bool, min_rows: int, max_rows: int | None = None
) -> dict[str, Any]:
    """Replace the embedding lookups of `model` (tables of min_rows..max_rows rows) by
    GatherBlockQuantized (in place); returns the report."""
    from onnx import helper

    from compressors.graph.edit import remove_unused_initializers

    found, skipped = _tables(model, min_rows, max_rows)
    quantized = []
    for node, table in found:
        if table.shape[1] % block:
            reason = f"dim {table.shape[1]} is not a multiple of block_size {block}"
            skipped.append({"table": node.input[0], "reason": reason})
            continue
        name = node.input[0]
        blocks = rtn(table, bits, block, symmetric)
        new, inits = gather_block_quantized(node, blocks, table.dtype)
        node.CopyFrom(new)
        model.graph.initializer.extend(inits)
        quantized.append(
            {"table": name, "shape": list(table.shape), "bits": bits, "scales": f"block {block}"}
        )
    if quantized:
        remove_unused_initializers(model.graph)
        if not any(o.domain == "com.microsoft" for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return {"quantized": quantized, "skipped": skipped}


def column_grid(table: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(uint8 codes, float scales [dim], uint8 zero points [dim]) of `table` [rows, dim]:
    asymmetric, one range per column, zero exactly representable."""
    values = np.asarray(table, np.float64)
    low = np.minimum(values.min(axis=0), 0.0)
    high = np.maximum(values.max(axis=0), 0.0)
    scales = (high - low) / 255.0
    scales = np.where(scales > 0, scales, 1.0)
    zero_points = np.clip(np.round(-low / scales), 0, 255)
    codes = np.clip(np.round(values / scales) + zero_points, 0, 255)
    return codes.astype(np.uint8), scales.astype(table.dtype), zero_points.astype(np.uint8)


def _gather_dequantized(node: Any, table: np.ndarray) -> tuple[list[Any], list[Any]]:
    """Gather from the uint8 codes of `table`, then DequantizeLinear per column: the nodes
    replacing Gather `node` and their initializers."""
    from onnx import helper, numpy_helper

    base, codes_out = node.input[0], f"{node.output[0]}_uint8"
    codes, scales, zero_points = column_grid(table)
    inits = [
        numpy_helper.from_array(codes, f"{base}_U8"),
        numpy_helper.from_array(scales, f"{base}_column_scales"),
        numpy_helper.from_array(zero_points, f"{base}_column_zero_points"),
    ]
    gather = helper.make_node("Gather", [inits[0].name, node.input[1]], [codes_out], name=node.name)
    dequantize = helper.make_node(
        "DequantizeLinear",
        [codes_out, inits[1].name, inits[2].name],
        list(node.output),
        name=f"{node.name}_dequantize",
        axis=-1,
    )
    return [gather, dequantize], inits


def quantize_tables_per_column(
    model: Any, min_rows: int, max_rows: int | None = None
) -> dict[str, Any]:
    """Replace the embedding lookups of `model` (tables of min_rows..max_rows rows) by
    8-bit per-column tables (in place); returns the report."""
    from compressors.graph.edit import remove_unused_initializers

    found, skipped = _tables(model, min_rows, max_rows)
    graph, quantized = model.graph, []
    for node, table in found:
        name, nodes, inits = node.input[0], *_gather_dequantized(node, table)
        position = list(graph.node).index(node)
        del graph.node[position]
        for offset, new in enumerate(nodes):
            graph.node.insert(position + offset, new)
        graph.initializer.extend(inits)
        quantized.append(
            {"table": name, "shape": list(table.shape), "bits": 8, "scales": "per column"}
        )
    if quantized:
        remove_unused_initializers(graph)
    return {"quantized": quantized, "skipped": skipped}
