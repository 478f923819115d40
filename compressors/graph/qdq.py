"""QDQ graphs of transformers: which MatMuls are linear layers, and float paths around them.

A transformer's MatMuls are of two kinds: linear layers (an activation times a constant
weight: the Q/K/V, output and feed-forward projections) and the attention products of two
activations (Q @ K^T, P @ V). Static quantization pays off on the first kind; the second
has ranges that change with every input, so it stays float.

ONNX Runtime's QDQ quantizer puts one QuantizeLinear/DequantizeLinear pair on a quantized
tensor and makes *every* reader of the tensor read the dequantized copy. In a transformer
the LayerNorm output that feeds the Q/K/V projections also feeds the residual Add, so the
residual stream would be rounded to uint8 at every layer. `keep_float_readers` gives
the readers that are not quantized ops the float tensor back.
"""

from __future__ import annotations

from typing import Any

LINEAR_OPS = ("MatMul", "Gemm")


def _constants(graph: Any) -> set[str]:
    names = {init.name for init in graph.initializer}
    return names | {out for node in graph.node if node.op_type == "Constant" for out in node.output}


def linear_layers(model: Any) -> list[str]:
    """Names of the MatMul/Gemm nodes that multiply by a constant weight (input 1)."""
    constants = _constants(model.graph)
    return [
        node.name
        for node in model.graph.node
        if node.op_type in LINEAR_OPS and len(node.input) > 1 and node.input[1] in constants
    ]


def activation_matmuls(model: Any) -> list[str]:
    """Names of the MatMuls whose inputs are both activations (attention's Q @ K^T, P @ V)."""
    constants = _constants(model.graph)
    return [
        node.name
        for node in model.graph.node
        if node.op_type == "MatMul" and not any(name in constants for name in node.input)
    ]


def name_nodes(model: Any) -> int:
    """Give every unnamed node a unique name (quantizers select and exclude nodes by name);
    returns how many were named."""
    from compressors.graph.edit import unique_name

    named = 0
    for node in model.graph.node:
        if not node.name:
            node.name = unique_name(model.graph, f"{node.op_type}_{named}")
            named += 1
    return named


def keep_float_readers(model: Any, quantized_ops: set[str]) -> int:
    """Make the readers of a DequantizeLinear(QuantizeLinear(x)) pair that are not of
    `quantized_ops` read x itself; drop the Q/DQ nodes left unread. Returns how many inputs
    were given back their float tensor."""
    from compressors.graph.edit import consumers

    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    readers = consumers(graph)
    changed = 0
    for dq in [n for n in graph.node if n.op_type == "DequantizeLinear"]:
        q = producers.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            continue
        for reader in readers.get(dq.output[0], []):
            if reader.op_type in quantized_ops:
                continue
            for k, name in enumerate(reader.input):
                if name == dq.output[0]:
                    reader.input[k] = q.input[0]
                    changed += 1
    _drop_unread(graph, {"QuantizeLinear", "DequantizeLinear"})
    return changed


def _drop_unread(graph: Any, op_types: set[str]) -> None:
    while True:
        read = {name for node in graph.node for name in node.input}
        read |= {out.name for out in graph.output}
        unread = [
            n for n in graph.node if n.op_type in op_types and not any(o in read for o in n.output)
        ]
        if not unread:
            return
        for node in unread:
            graph.node.remove(node)


def drop_value_info(model: Any) -> None:
    """Remove the stored intermediate shapes. ONNX Runtime infers them again at load, with
    the sequence axis symbolic, and then does not fuse Add + LayerNormalization into
    SkipLayerNormalization, whose CPU kernel in onnxruntime 1.32 takes ~5x the time of the
    two ops it replaces (68 vs 14 us at 1x32x384 on one thread; ~0.4 ms of MiniLM's 3 ms)."""
    del model.graph.value_info[:]


def drop_zero_weight_zero_points(model: Any) -> int:
    """Remove the all-zero int8 zero points of DequantizeLinear nodes on constant weights
    (symmetric weights; a missing zero point is 0); returns how many were dropped."""
    import numpy as np
    from onnx import TensorProto, numpy_helper

    from compressors.graph.edit import remove_unused_initializers

    inits = {init.name: init for init in model.graph.initializer}
    dropped = 0
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) != 3:
            continue
        data, zero = inits.get(node.input[0]), inits.get(node.input[2])
        if data is None or zero is None or data.data_type != TensorProto.INT8:
            continue
        if not np.any(numpy_helper.to_array(zero)):
            del node.input[2]
            dropped += 1
    if dropped:
        remove_unused_initializers(model.graph)
    return dropped
