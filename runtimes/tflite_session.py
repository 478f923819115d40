"""One int8 .tflite model loaded in an `ai_edge_litert` interpreter.

The model was converted at batch 1 with int8 inputs and outputs (full-integer, as the
EdgeTPU needs), so a request of any batch size runs row by row: each row's float inputs
are quantized with the input's scale and zero point, the outputs dequantized back. The
interpreter is not thread-safe: one lock serialises invocations.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from pareto_core.errors import FailedPrecondition, InvalidArgument
from pareto_core.tensors import NUMPY_TO_KSERVE, Signature, TensorSpec
from runtimes.base import Session


def _in_order(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tensors in the converted model's argument order: the converter names them
    `serving_default_args_<i>` / `serving_default_output_<i>`, which the interpreter may
    list in another order."""
    matches = [re.search(r"_(\d+)(?:_output)?$", d["name"]) for d in details]
    numbers = [int(m[1]) for m in matches if m is not None]
    if len(numbers) != len(details):
        return list(details)
    return [d for _, d in sorted(zip(numbers, details, strict=True), key=lambda p: p[0])]


def quantize(values: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Float values to the tensor's integer type with its (scale, zero point)."""
    dtype = np.dtype(detail["dtype"])
    scale, zero = detail["quantization"]
    if not scale or not np.issubdtype(dtype, np.integer):
        return values.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    q = np.round(values.astype(np.float32) / scale) + zero
    quantized: np.ndarray = np.clip(q, info.min, info.max).astype(dtype)
    return quantized


def dequantize(values: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero = detail["quantization"]
    if not scale:
        return values
    restored: np.ndarray = ((values.astype(np.float32) - zero) * scale).astype(np.float32)
    return restored


class TfliteSession(Session):
    def __init__(
        self,
        path: Path,
        report: dict[str, Any],
        threads: int,
        delegates: list[Any],
        device: str,
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.device = device
        self.report = report
        self._interpreter = Interpreter(
            model_path=str(path), num_threads=threads, experimental_delegates=delegates or None
        )
        self._interpreter.allocate_tensors()
        self._inputs = _in_order(self._interpreter.get_input_details())
        self._outputs = _in_order(self._interpreter.get_output_details())
        names_in, names_out = report["inputs"], report["outputs"]
        if len(names_in) != len(self._inputs) or len(names_out) != len(self._outputs):
            raise FailedPrecondition(
                f"{path}: the .tflite has {len(self._inputs)} inputs/{len(self._outputs)} "
                f"outputs, the model {len(names_in)}/{len(names_out)}"
            )
        self._in_names, self._out_names = list(names_in), list(names_out)
        self.signature = Signature(
            tuple(self._spec(n, d) for n, d in zip(names_in, self._inputs, strict=True)),
            tuple(self._spec(n, d) for n, d in zip(names_out, self._outputs, strict=True)),
        )
        self._lock = threading.Lock()
        self._closed = False

    @staticmethod
    def _spec(name: str, detail: dict[str, Any]) -> TensorSpec:
        """Quantized tensors are float32 to the caller (quantized/dequantized here)."""
        quantized = bool(detail["quantization"][0])
        dtype = np.dtype(np.float32) if quantized else np.dtype(detail["dtype"])
        shape = (-1, *(int(d) for d in detail["shape"][1:]))
        return TensorSpec(name, NUMPY_TO_KSERVE.get(dtype, "FP32"), shape)

    def run(
        self, inputs: dict[str, np.ndarray], output_names: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        if self._closed:
            raise FailedPrecondition("edgetpu_tflite session is closed")
        arrays = [np.asarray(inputs[name]) for name in self._in_names]
        self._check_shapes(arrays)
        if len(arrays[0]) == 0:
            raise InvalidArgument(f"input {self._in_names[0]!r}: the batch is empty")
        rows = [self._run_row([a[i : i + 1] for a in arrays]) for i in range(len(arrays[0]))]
        wanted = output_names or self._out_names
        index = {name: i for i, name in enumerate(self._out_names)}
        return {name: np.concatenate([r[index[name]] for r in rows]) for name in wanted}

    def _check_shapes(self, arrays: list[np.ndarray]) -> None:
        for name, array, detail in zip(self._in_names, arrays, self._inputs, strict=True):
            want = tuple(int(d) for d in detail["shape"][1:])
            if tuple(array.shape[1:]) != want:
                raise InvalidArgument(
                    f"input {name!r}: this int8 .tflite was built for shape [-1, "
                    f"{', '.join(map(str, want))}], got {list(array.shape)}"
                )

    def _run_row(self, row: list[np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            for array, detail in zip(row, self._inputs, strict=True):
                self._interpreter.set_tensor(detail["index"], quantize(array, detail))
            self._interpreter.invoke()
            return [
                dequantize(self._interpreter.get_tensor(d["index"]).copy(), d)
                for d in self._outputs
            ]

    def close(self) -> None:
        self._closed = True
        self._interpreter = None
