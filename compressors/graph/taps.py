"""Reading a model's intermediate tensors on data: the statistics SmoothQuant and GPTQ need.

The model is saved once with the wanted tensors added as graph outputs and run batch by
batch with ONNX Runtime; each batch's values go to a callback, so nothing but the
statistics is kept. Token activations [batch, seq, features] come back as rows
[tokens, features] of the real tokens only when the feeds hold an attention mask (padding
positions are not what the model computes on for its users, see
`compressors.measure.tokens`); other tensors come back as [rows, last axis].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from compressors.graph.run import batches
from pareto_core.errors import Cancelled

# (tensor name, rows [n, features] of one batch) -> None
RowsFn = Callable[[str, np.ndarray], None]
FLOAT = 1  # onnx.TensorProto.FLOAT: the tapped tensors are float activations


def _with_outputs(model: Any, tensors: Sequence[str], path: Path) -> None:
    import onnx
    from onnx import helper

    present = {out.name for out in model.graph.output}
    for name in tensors:
        if name not in present:
            model.graph.output.append(helper.make_tensor_value_info(name, FLOAT, None))
    onnx.save(model, str(path))


def _rows(array: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    if mask is not None and array.ndim == 3 and array.shape[:2] == mask.shape:
        return array[mask]
    return array.reshape(-1, array.shape[-1]) if array.ndim else array.reshape(1, 1)


def collect_rows(
    model_path: Path,
    tensors: Sequence[str],
    feeds: dict[str, np.ndarray],
    on_rows: RowsFn,
    work_dir: Path,
    batch_size: int = 16,
    threads: int = 1,
    is_cancelled: Callable[[], bool] = lambda: False,
) -> None:
    """Run the model at `model_path` on `feeds` and hand every batch's value of each of
    `tensors` to `on_rows` as float64 rows (see the module docstring)."""
    from compressors.graph.files import load_model
    from compressors.measure.tokens import token_mask
    from runtimes.onnxruntime_cpu import OnnxRuntimeCpu

    tapped = work_dir / "tapped.onnx"
    _with_outputs(load_model(model_path), tensors, tapped)
    session = OnnxRuntimeCpu().load(tapped, {"intra_op_threads": threads, "inter_op_threads": 1})
    try:
        for batch in batches(feeds, batch_size):
            if is_cancelled():
                raise Cancelled("cancelled while reading activations")
            mask = token_mask(batch)
            values = session.run(batch, list(tensors))
            for name in tensors:
                on_rows(name, _rows(np.asarray(values[name], np.float64), mask))
    finally:
        session.close()
        tapped.unlink(missing_ok=True)
