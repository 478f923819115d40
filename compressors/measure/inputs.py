"""The inputs every model of one evaluation runs on: a dataset's samples or synthetic ones.

With a dataset: its first `max_samples` samples and labels. Without one: seeded synthetic
samples from the parent's signature: standard normal floats, integer and boolean inputs all
ones (a valid token id and a full attention mask), dynamic non-batch dimensions set to
`SYNTHETIC_SEQ_LEN` (a typical sentence length for text models). Each model then takes
`n` rows of these (`inputs_for`), matched by input name (or position), cast to its dtypes.
"""

from __future__ import annotations

import numpy as np

from compressors.base import Dataset
from pareto_core.errors import FailedPrecondition
from pareto_core.tensors import Signature, TensorSpec

SYNTHETIC_SEQ_LEN = 32
SYNTHETIC_SAMPLES = 64
_SEED = 0


def fixed_batch(signature: Signature) -> int | None:
    """The first input's fixed first dimension, or None when it is dynamic (a batch axis)."""
    shape = signature.inputs[0].shape if signature.inputs else ()
    return shape[0] if shape and shape[0] > 0 else None


def _synthetic(spec: TensorSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    shape = (n, *(SYNTHETIC_SEQ_LEN if d < 0 else d for d in spec.shape[1:]))
    if np.issubdtype(spec.numpy_dtype, np.floating):
        return rng.standard_normal(shape).astype(spec.numpy_dtype)
    return np.ones(shape, dtype=spec.numpy_dtype)


def source_inputs(
    signature: Signature, dataset: Dataset | None, max_samples: int
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The samples every model runs on (quality and latency) and their labels, if any."""
    if dataset is None:
        rng = np.random.default_rng(_SEED)
        return {t.name: _synthetic(t, SYNTHETIC_SAMPLES, rng) for t in signature.inputs}, None
    n = min(dataset.num_samples, max_samples)
    inputs = {name: np.asarray(array[:n]) for name, array in dataset.inputs.items()}
    labels = None if dataset.labels is None else np.asarray(dataset.labels[:n])
    return inputs, labels


def rows(array: np.ndarray, n: int) -> np.ndarray:
    """The first `n` rows, repeating the array when it has fewer."""
    if len(array) >= n:
        return array[:n]
    return np.take(array, np.arange(n) % len(array), axis=0)


def inputs_for(
    signature: Signature, source: dict[str, np.ndarray], n: int
) -> dict[str, np.ndarray]:
    """`n` rows of `source` for each input of `signature` (by name, else by position),
    cast to the input's dtype."""
    arrays = list(source.values())
    inputs = {}
    for k, spec in enumerate(signature.inputs):
        array = source.get(spec.name)
        if array is None:
            if len(arrays) != len(signature.inputs):
                raise FailedPrecondition(
                    f"model input {spec.name!r} is not in the evaluation inputs {list(source)}"
                )
            array = arrays[k]
        inputs[spec.name] = np.ascontiguousarray(rows(array, n), dtype=spec.numpy_dtype)
    return inputs
