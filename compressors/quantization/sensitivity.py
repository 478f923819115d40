"""Scoring quantized candidates against a reference model, for quantize.accuracy_aware.

`Scorer` runs the reference once on the evaluation samples, then scores any candidate model
file on the same samples with ONNX Runtime: the quality map of `compressors.quality`
(accuracy/loss against labels when there are labels, cosine/top-1 agreement/max error
against the reference's outputs), i.e. the figures the job's evaluation and budget use.
Candidates are ranked by the figure the budget constrains, mean cosine breaking ties
(accuracy on a few hundred samples often ties).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compressors.base import Artifact, Dataset
from compressors.graph.files import artifact_for
from compressors.graph.run import feeds_for, outputs_of, score

COSINE = "cosine_mean"
ACCURACY = "accuracy"
TOP1 = "top1_agreement"


def metric_for(budget: dict[str, Any], reference_quality: dict[str, float]) -> str:
    """The figure to rank by: the one the budget constrains (accuracy only when measurable),
    else the default budget's: accuracy with labels, mean cosine without."""
    from compressors.measure.budget import MAX_ACCURACY_DROP, MIN_COSINE, MIN_TOP1_AGREEMENT

    has_accuracy = ACCURACY in reference_quality
    if budget.get(MAX_ACCURACY_DROP) is not None and has_accuracy:
        return ACCURACY
    if budget.get(MIN_COSINE) is not None:
        return COSINE
    if budget.get(MIN_TOP1_AGREEMENT) is not None and TOP1 in reference_quality:
        return TOP1
    return ACCURACY if has_accuracy else COSINE


@dataclass
class Scorer:
    reference: Artifact
    dataset: Dataset
    samples: int
    threads: int
    batch_size: int
    budget: dict[str, Any]

    def __post_init__(self) -> None:
        from compressors.measure.tokens import token_mask

        self.output = self.reference.signature.outputs[0].name
        self.reference_outputs = self._run(self.reference)
        n = len(self.reference_outputs)
        self.labels = None if self.dataset.labels is None else np.asarray(self.dataset.labels[:n])
        self.mask = token_mask({k: v[:n] for k, v in self.dataset.inputs.items()})
        self.reference_quality = self._score(self.reference_outputs)
        self.metric = metric_for(self.budget, self.reference_quality)

    def _score(self, outputs: np.ndarray) -> dict[str, float]:
        return score(outputs, self.reference_outputs, self.labels, self.mask)

    def _run(self, artifact: Artifact) -> np.ndarray:
        names = [t.name for t in artifact.signature.outputs]
        output = self.output if self.output in names else names[0]
        feeds = feeds_for(artifact.signature, self.dataset.inputs, self.samples, "evaluation")
        return outputs_of(artifact.path, feeds, output, self.threads, self.batch_size)

    def score(self, path: Path) -> dict[str, float]:
        """The quality map of the model at `path` (same IO as the step's input)."""
        return self._score(self._run(artifact_for(path)))

    def key(self, quality: dict[str, float]) -> tuple[float, float]:
        """Sort key: the metric, then cosine (accuracy alone ties on small datasets)."""
        return quality.get(self.metric, 0.0), quality.get(COSINE, 0.0)


def rank(
    scorer: Scorer, baseline: dict[str, float], entries: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """`entries` ({"node", ..., "quality"}) with their gain over `baseline` (the fully
    quantized model), most sensitive first."""
    base_metric, base_cosine = scorer.key(baseline)
    for entry in entries:
        metric, cosine = scorer.key(entry["quality"])
        entry["gain"] = round(metric - base_metric, 6)
        entry["cosine_gain"] = round(cosine - base_cosine, 6)
    return sorted(entries, key=lambda e: (e["gain"], e["cosine_gain"]), reverse=True)
