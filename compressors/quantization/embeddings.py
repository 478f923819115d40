"""Embedding tables stored in n bits: Gather from a float table -> GatherBlockQuantized.

A text model's token embedding table is often its largest tensor (MiniLM: 30522 x 384, 52%
of the file) and MatMul quantizers leave it float. Looking rows up in a block-quantized
table costs nothing measurable, so weight-only quantization stores it in 4 or 8 bits too
(round to nearest, blocks along the embedding dimension). Small tables (position and
token-type embeddings: added to every token, a few hundred KB) stay float below
`min_rows`.
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


def _tables(model: Any, min_rows: int) -> tuple[list[tuple[Any, np.ndarray]], list[dict]]:
    """(Gather nodes reading a float [rows, dim] initializer on axis 0 with their table,
    tables skipped with the reason)."""
    from compressors.graph.edit import consumers, get_attribute, initializer_arrays

    graph = model.graph
    arrays, readers = initializer_arrays(graph), consumers(graph)
    found, skipped = [], []
    for node in graph.node:
        table = arrays.get(node.input[0]) if node.op_type == "Gather" else None
        if table is None or table.ndim != 2 or not np.issubdtype(table.dtype, np.floating):
            continue
        name = node.input[0]
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
    model: Any, bits: int, block: int, symmetric: bool, min_rows: int
) -> dict[str, Any]:
    """Replace the embedding lookups of `model` (in place); returns the report."""
    from onnx import helper

    from compressors.graph.edit import remove_unused_initializers

    found, skipped = _tables(model, min_rows)
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
        quantized.append({"table": name, "shape": list(table.shape), "bits": bits})
    if quantized:
        remove_unused_initializers(model.graph)
        if not any(o.domain == "com.microsoft" for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return {"quantized": quantized, "skipped": skipped}
