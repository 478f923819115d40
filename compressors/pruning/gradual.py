"""prune.gradual: magnitude pruning raised during fine-tuning (Zhu & Gupta, 2017).

The model (ONNX, or a .pt2 exported to ONNX) is converted to torch (onnx2torch; a model
uploaded as a Hugging Face folder is built from its torch source instead), optionally
first narrowed by structured channel removal (`structured_ratio`, torch-pruning, as
prune.structured), then fine-tuned on the labeled "training" dataset while the sparsity of
its weights (every parameter with >= 2 dims and >= `min_size` elements) rises on the
polynomial schedule s_t = s_f + (s_i - s_f)(1 - (t - t0)/n)^3 from `initial_sparsity` to
`final_sparsity`, masks recomputed every `frequency` steps (global or per-layer magnitude),
and pruned weights held at zero after every step. A seeded held-out part scores every
epoch; checkpoints every epoch, resumed after a restart. The result is a dense ONNX whose
zeros compress well (gzip size in the evaluation), or a smaller one with structured removal.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, model_validator

from compressors.base import (
    ROLE_TRAINING,
    Artifact,
    JobInfo,
    StepContext,
    StepResult,
    Technique,
    TechniqueConfig,
)
from compressors.registry import register
from compressors.training.schedules import Schedule, polynomial_sparsity
from pareto_core.formats import FORMAT_ONNX, FORMAT_TORCH_EXPORT

NAME = "prune.gradual"


class GradualPruneConfig(TechniqueConfig):
    final_sparsity: float = Field(0.8, gt=0.0, lt=1.0)
    initial_sparsity: float = Field(0.0, ge=0.0, lt=1.0)
    begin_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="of training steps")
    end_fraction: float = Field(0.75, gt=0.0, le=1.0, description="of training steps")
    frequency: int = Field(10, ge=1, description="steps between mask updates")
    power: float = Field(3.0, gt=0.0, le=10.0)
    scope: Literal["global", "per_layer"] = "global"
    min_size: int = Field(256, ge=1, description="weights with fewer elements are kept")
    structured_ratio: float = Field(0.0, ge=0.0, lt=1.0, description="channels removed first")
    epochs: int = Field(10, ge=1, le=10_000)
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    batch_size: int = Field(64, ge=1, le=65_536)
    schedule: Schedule = "constant"
    holdout_fraction: float = Field(0.1, ge=0.0, lt=0.9)

    @model_validator(mode="after")
    def _ordered(self) -> GradualPruneConfig:
        if self.initial_sparsity > self.final_sparsity:
            raise ValueError("initial_sparsity must not exceed final_sparsity")
        if self.begin_fraction >= self.end_fraction:
            raise ValueError("begin_fraction must be below end_fraction")
        return self


class _Masks:
    """Keep-masks of the pruned weights, recomputed on the schedule and applied after steps."""

    def __init__(self, module: Any, config: GradualPruneConfig, total_steps: int) -> None:
        self.weights = [
            p for p in module.parameters() if p.ndim >= 2 and p.numel() >= config.min_size
        ]
        self.config = config
        self.begin = round(config.begin_fraction * total_steps)
        self.end = max(self.begin + 1, round(config.end_fraction * total_steps))
        self.masks: list[Any] = []
        self.sparsity = 0.0

    def __call__(self, step: int) -> None:
        import torch

        from compressors.pruning.magnitude import magnitude_masks

        c = self.config
        if step == 1 or step % c.frequency == 0 or step == self.end:
            target = polynomial_sparsity(
                step, self.begin, self.end, c.initial_sparsity, c.final_sparsity, c.power
            )
            if target > 0 and not math.isclose(target, self.sparsity):
                arrays = [w.detach().numpy() for w in self.weights]
                keep = magnitude_masks(arrays, target, c.scope)
                self.masks = [torch.from_numpy(k) for k in keep]
                self.sparsity = target
        with torch.no_grad():
            for weight, mask in zip(self.weights, self.masks, strict=False):
                weight.mul_(mask)

    def achieved(self) -> float:
        total = sum(w.numel() for w in self.weights)
        zeros = sum(int((w == 0).sum()) for w in self.weights)
        return round(zeros / total, 6) if total else 0.0


@register
class GradualPrune(Technique):
    name = NAME
    config_cls = GradualPruneConfig
    input_formats = frozenset({FORMAT_ONNX, FORMAT_TORCH_EXPORT})
    description = "Magnitude pruning on a polynomial schedule during fine-tuning (Zhu & Gupta)."

    def check_job(self, config: GradualPruneConfig, job: JobInfo, where: str) -> None:
        from compressors.distillation.checks import require_training_set

        require_training_set(job, NAME, "the fine-tuning that recovers accuracy uses them")

    def apply(self, artifact: Artifact, config: GradualPruneConfig, ctx: StepContext) -> StepResult:
        from compressors.training.source_module import torch_module, verify_export
        from compressors.training.torch_bridge import example_inputs, torch_threads, torch_to_onnx

        training = ctx.dataset(ROLE_TRAINING, NAME)
        with torch_threads(ctx.threads):
            module, from_source = torch_module(artifact, ctx)
            example = example_inputs(artifact.signature, training)
            if config.structured_ratio:
                from compressors.pruning.structured import StructuredPruneConfig, prune_channels

                prune_channels(
                    module, example, StructuredPruneConfig(ratio=config.structured_ratio)
                )
            report, masks = _finetune(module, training, artifact, config, ctx)
            out = torch_to_onnx(module, example, artifact.signature, ctx.work_dir / "pruned.onnx")
            if from_source:
                report["export_max_abs_diff"] = verify_export(module, out, example)
        report.update(achieved_sparsity=masks.achieved(), target_sparsity=config.final_sparsity)
        ctx.progress(1.0, f"sparsity {report['achieved_sparsity']:.1%}", {})
        return StepResult(out, report)


def _finetune(
    module: Any, training: Any, artifact: Artifact, config: GradualPruneConfig, ctx: StepContext
) -> tuple[dict[str, Any], _Masks]:
    import torch

    from compressors.distillation.transfer import split_indices, student_outputs
    from compressors.training.checkpoint import Checkpoint
    from compressors.training.finetune import labeled_arrays
    from compressors.training.loop import TrainPlan, fit

    arrays, labels = labeled_arrays(training, [t.name for t in artifact.signature.inputs], NAME)
    train_idx, held_idx = split_indices(len(labels), config.holdout_fraction, ctx.seed)
    steps = math.ceil(len(train_idx) / config.batch_size) * config.epochs
    masks = _Masks(module, config, steps)
    held = [a[held_idx] for a in arrays], labels[held_idx]

    def score(m: Any) -> float:
        return float((student_outputs(m, held[0]).argmax(-1).numpy() == held[1]).mean())

    def loss_fn(m: Any, batch: list[Any], ys: Any, idx: Any) -> Any:
        out = m(*batch)
        return torch.nn.functional.cross_entropy(
            out[0] if isinstance(out, list | tuple) else out, ys
        )

    plan = TrainPlan(
        config.epochs, config.lr, config.batch_size, config.schedule, seed=ctx.seed, keep_best=False
    )
    report = fit(
        module,
        [a[train_idx] for a in arrays],
        labels[train_idx],
        plan,
        loss_fn,
        score_fn=score if len(held_idx) else None,
        checkpoint=Checkpoint(ctx.checkpoint_dir, f"{NAME}:{config.model_dump_json()}:{ctx.seed}"),
        progress=lambda f, message, metrics: ctx.progress(0.1 + 0.8 * f, message, metrics),
        is_cancelled=ctx.is_cancelled,
        after_step=masks,
    )
    masks(steps)  # the final sparsity, also when the best epoch was restored
    return report, masks
