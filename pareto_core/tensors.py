"""Tensor vocabulary: KServe v2 datatypes, tensor specs and model signatures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# KServe v2 datatype name <-> numpy dtype. BYTES (variable-length strings) has no numpy
# dtype of fixed width: it is the datatype of a text input (`Signature.text`).
KSERVE_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
NUMPY_TO_KSERVE: dict[np.dtype[Any], str] = {v: k for k, v in KSERVE_TO_NUMPY.items()}


@dataclass(frozen=True)
class TensorSpec:
    """Name, KServe datatype and shape of one model input or output (-1 = dynamic)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def numpy_dtype(self) -> np.dtype[Any]:
        return KSERVE_TO_NUMPY[self.datatype]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(data["name"], data["datatype"], tuple(int(d) for d in data["shape"]))


TEXT_DATATYPE = "BYTES"


def text_input(name: str) -> TensorSpec:
    """A text input: BYTES, one UTF-8 string per row."""
    return TensorSpec(name, TEXT_DATATYPE, (-1,))


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    # A model served with its tokenizer also takes this input (`text_input`): a request
    # sends it alone, and the gateway tokenizes it into `inputs`; or it sends `inputs`.
    text: TensorSpec | None = None

    @property
    def served_inputs(self) -> tuple[TensorSpec, ...]:
        """What a client may send, as model metadata lists it: the text input first."""
        return self.inputs if self.text is None else (self.text, *self.inputs)

    def input(self, name: str) -> TensorSpec | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((t for t in self.outputs if t.name == name), None)
