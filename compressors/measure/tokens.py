"""Token-level outputs of text models: which positions are real tokens, and pooling.

A transformer's per-token output ([batch, seq, hidden], e.g. `last_hidden_state`) holds
values at padding positions too. Nothing downstream reads them (poolers and task heads
apply the attention mask), so comparing them would count noise: fidelity is measured on
the positions the attention mask marks as real, and a sentence embedding is the mean of
those positions (what sentence-transformers' mean pooling does).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

_MASK_WORD = "mask"


def token_mask(inputs: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """The attention mask among a model's inputs: a 2-D integer or boolean input whose name
    contains "mask" and whose values are all 0 or 1 (the first such, "attention_mask"
    preferred), or None."""
    names = sorted(inputs, key=lambda name: name != "attention_mask")
    for name in names:
        array = np.asarray(inputs[name])
        if _MASK_WORD not in name.lower() or array.ndim != 2:
            continue
        if array.dtype != np.bool_ and not np.issubdtype(array.dtype, np.integer):
            continue
        if array.size and np.isin(array, (0, 1)).all():
            return array.astype(bool)
    return None


def is_token_level(outputs: np.ndarray, mask: np.ndarray | None) -> bool:
    """Outputs [batch, seq, features] whose first two axes are the mask's."""
    return mask is not None and outputs.ndim == 3 and outputs.shape[:2] == mask.shape


def masked(outputs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`outputs` [batch, seq, features] in float64 with padding positions set to zero."""
    return np.asarray(outputs, np.float64) * mask[..., None]


def mean_pool(outputs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[batch, features]: the mean over each sample's real tokens (zero when it has none)."""
    counts = np.maximum(mask.sum(axis=1, keepdims=True), 1)
    return masked(outputs, mask).sum(axis=1) / counts
