"""Quality of a model's outputs: against labels, and against a reference model's outputs.

Figures, as in a `pareto.v1.Measurement`'s `quality` map:

* against labels: `accuracy` (top-1) and `loss` (cross-entropy) of class scores
  [batch, classes] with integer labels in range; `token_accuracy` of per-token class
  scores [batch, seq, classes] against labels [batch, seq], on real tokens only;
* fidelity to a reference (the parent on the same inputs): `cosine_mean` / `cosine_min`
  (per-sample cosine similarity of the flattened outputs), `top1_agreement` (same argmax;
  2-D outputs only) and `max_abs_error`;
* for token-level outputs ([batch, seq, features] with an attention mask among the inputs,
  see `tokens`): the fidelity figures above on the real tokens only (padding positions are
  noise nobody reads), plus `pooled_cosine_mean` / `pooled_cosine_min`, the cosine of the
  mask-pooled sentence embeddings;
* for embeddings (token-level outputs, pooled; or 2-D outputs of at least
  `MIN_EMBEDDING_FEATURES` features not scored against labels): whether samples keep their
  nearest neighbours (`nn_top1_agreement`, `nn_overlap_at_5`, `pairwise_spearman`, see
  `neighbours`).

`QualityAccumulator` adds these up over batches, so a caller runs a model chunk by chunk
(`batched_outputs`) without holding every output at once (the embeddings for the
neighbour figures are kept: one vector per sample). Both are reusable on their own, e.g.
by quantize.accuracy_aware to score a candidate against the fp32 model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from compressors.measure.neighbours import neighbour_agreement
from compressors.measure.tokens import is_token_level, masked, mean_pool
from runtimes.base import Session

_PROBABILITY_TOLERANCE = 1e-3
_MIN_PROBABILITY = 1e-12
MIN_EMBEDDING_FEATURES = 16


def _flat(outputs: np.ndarray) -> np.ndarray:
    """[batch, ...] -> [batch, features] in float64."""
    array = np.asarray(outputs, dtype=np.float64)
    return array.reshape(len(array), -1) if array.ndim else array.reshape(1, 1)


def is_classification(outputs: np.ndarray, labels: np.ndarray | None = None) -> bool:
    """Outputs look like class scores: [batch, classes>=2], and labels (if any) fit them."""
    if outputs.ndim != 2 or outputs.shape[1] < 2:
        return False
    if labels is None:
        return True
    labels = np.asarray(labels)
    return (
        labels.shape == (len(outputs),)
        and np.issubdtype(labels.dtype, np.integer)
        and bool(((labels >= 0) & (labels < outputs.shape[1])).all())
    )


def cosine_similarities(outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-sample cosine of the flattened outputs; 1 when both are zero, 0 when one is."""
    a, b = _flat(outputs), _flat(reference)
    dot = (a * b).sum(axis=1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    both_zero = (np.linalg.norm(a, axis=1) == 0) & (np.linalg.norm(b, axis=1) == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), 0.0)
    return np.clip(np.where(both_zero, 1.0, cos), -1.0, 1.0)


def top1_agreement(outputs: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of samples whose argmax over the last axis is the same (2-D outputs)."""
    return float((outputs.argmax(axis=1) == reference.argmax(axis=1)).mean())


def max_abs_error(outputs: np.ndarray, reference: np.ndarray) -> float:
    diff = np.abs(np.asarray(outputs, np.float64) - np.asarray(reference, np.float64))
    return float(diff.max()) if diff.size else 0.0


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of class scores [batch, classes] against integer labels."""
    return float((outputs.argmax(axis=1) == labels).mean())


def looks_like_probabilities(outputs: np.ndarray) -> bool:
    """Rows are non-negative and sum to 1 (a softmax output rather than logits)."""
    sums = outputs.sum(axis=1)
    return bool((outputs >= 0).all() and np.allclose(sums, 1.0, atol=_PROBABILITY_TOLERANCE))


def cross_entropy(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy (nats) of logits, or of probabilities when rows already are."""
    scores = np.asarray(outputs, dtype=np.float64)
    if looks_like_probabilities(scores):
        log_probs = np.log(np.clip(scores, _MIN_PROBABILITY, 1.0))
    else:
        shifted = scores - scores.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


@dataclass
class QualityAccumulator:
    """Running sums of the quality figures over batches of (outputs, reference, labels)."""

    samples: int = 0
    labeled: int = 0
    correct: int = 0
    loss_sum: float = 0.0
    agree: int = 0
    classified: int = 0
    tokens: int = 0
    tokens_correct: int = 0
    max_error: float = 0.0
    cosines: list[np.ndarray] = field(default_factory=list)
    pooled_cosines: list[np.ndarray] = field(default_factory=list)
    embeddings: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)

    def add(
        self,
        outputs: np.ndarray,
        reference: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> None:
        """Add one batch. `reference` is the parent's output on the same inputs, if any;
        `mask` the batch's attention mask [batch, seq] (see `tokens.token_mask`), if any."""
        n = len(outputs)
        self.samples += n
        token_level = is_token_level(outputs, mask)
        scored = self._add_labels(outputs, labels, mask if token_level else None)
        if reference is None:
            return
        if outputs.shape != reference.shape:
            raise ValueError(
                f"output shape {outputs.shape} differs from the reference's {reference.shape}"
            )
        if token_level:
            assert mask is not None
            self._add_tokens(outputs, reference, mask, keep_embeddings=not scored)
        else:
            self._add_flat(outputs, reference)
            if not scored and _embedding_like(outputs):
                self.embeddings.append((np.asarray(outputs, np.float64), np.asarray(reference)))
        if is_classification(outputs):
            self.classified += n
            self.agree += int((outputs.argmax(axis=1) == reference.argmax(axis=1)).sum())

    def _add_labels(
        self, outputs: np.ndarray, labels: np.ndarray | None, mask: np.ndarray | None
    ) -> bool:
        """Count accuracy (and loss) against `labels`; whether the outputs were scored."""
        if labels is None:
            return False
        if mask is not None and _token_labels_fit(outputs, labels, mask):
            self.tokens += int(mask.sum())
            self.tokens_correct += int(((outputs.argmax(axis=2) == labels) & mask).sum())
            return True
        if not is_classification(outputs, labels):
            return False
        n = len(outputs)
        self.labeled += n
        self.correct += int((outputs.argmax(axis=1) == labels).sum())
        self.loss_sum += cross_entropy(outputs, labels) * n
        return True

    def _add_flat(self, outputs: np.ndarray, reference: np.ndarray) -> None:
        if outputs is reference:  # the reference against itself: exactly 1 and 0
            self.cosines.append(np.ones(len(outputs)))
            return
        self.cosines.append(cosine_similarities(outputs, reference))
        self.max_error = max(self.max_error, max_abs_error(outputs, reference))

    def _add_tokens(
        self, outputs: np.ndarray, reference: np.ndarray, mask: np.ndarray, keep_embeddings: bool
    ) -> None:
        """Fidelity on real tokens only, and of the mask-pooled sentence embeddings."""
        pooled, pooled_ref = mean_pool(outputs, mask), mean_pool(reference, mask)
        if keep_embeddings:
            self.embeddings.append((pooled, pooled_ref))
        if outputs is reference:
            self.cosines.append(np.ones(len(outputs)))
            self.pooled_cosines.append(np.ones(len(outputs)))
            return
        self.cosines.append(cosine_similarities(masked(outputs, mask), masked(reference, mask)))
        self.pooled_cosines.append(cosine_similarities(pooled, pooled_ref))
        if mask.any():
            self.max_error = max(self.max_error, max_abs_error(outputs[mask], reference[mask]))

    def result(self) -> dict[str, float]:
        """The quality map: only the figures that could be computed from what was added."""
        quality: dict[str, float] = {}
        if self.labeled:
            quality["accuracy"] = self.correct / self.labeled
            quality["loss"] = self.loss_sum / self.labeled
        if self.tokens:
            quality["token_accuracy"] = self.tokens_correct / self.tokens
        if self.cosines:
            cosines = np.concatenate(self.cosines)
            quality["cosine_mean"] = float(cosines.mean())
            quality["cosine_min"] = float(cosines.min())
            quality["max_abs_error"] = self.max_error
        if self.pooled_cosines:
            pooled = np.concatenate(self.pooled_cosines)
            quality["pooled_cosine_mean"] = float(pooled.mean())
            quality["pooled_cosine_min"] = float(pooled.min())
        if self.classified:
            quality["top1_agreement"] = self.agree / self.classified
        if self.embeddings:
            outputs = np.concatenate([o for o, _ in self.embeddings])
            reference = np.concatenate([r for _, r in self.embeddings])
            quality.update(neighbour_agreement(outputs, reference))
        return quality


def _embedding_like(outputs: np.ndarray) -> bool:
    """2-D float outputs wide enough to be an embedding (not a handful of class scores)."""
    return (
        outputs.ndim == 2
        and outputs.shape[1] >= MIN_EMBEDDING_FEATURES
        and np.issubdtype(outputs.dtype, np.floating)
    )


def _token_labels_fit(outputs: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> bool:
    """Per-token class scores [batch, seq, classes>=2] and integer labels [batch, seq]
    in range on the real tokens."""
    labels = np.asarray(labels)
    if labels.shape != mask.shape or outputs.shape[2] < 2:
        return False
    if not np.issubdtype(labels.dtype, np.integer):
        return False
    real = labels[mask]
    return bool(((real >= 0) & (real < outputs.shape[2])).all())


def quality_metrics(
    outputs: np.ndarray,
    reference: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> dict[str, float]:
    """The quality map of whole arrays in one call."""
    acc = QualityAccumulator()
    acc.add(outputs, reference, labels, mask)
    return acc.result()


def batched_outputs(
    session: Session, inputs: dict[str, np.ndarray], output: str, batch_size: int
) -> Iterator[np.ndarray]:
    """Run `session` over `inputs` (first axis = samples) `batch_size` rows at a time,
    yielding output `output` of each batch."""
    total = len(next(iter(inputs.values())))
    for start in range(0, total, batch_size):
        chunk = {name: array[start : start + batch_size] for name, array in inputs.items()}
        yield session.run(chunk, [output])[output]
