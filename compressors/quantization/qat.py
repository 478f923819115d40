"""quantize.qat: quantization-aware training, then int8 QDQ ONNX that ONNX Runtime runs.

The model (ONNX, or a .pt2 exported to ONNX first) is converted to torch (onnx2torch; a model
uploaded as a Hugging Face folder is built from its torch source instead) and
prepared with torch.ao's eager-mode QAT (`prepare_qat`): every Conv/Linear trains through
fake-quantized weights, one symmetric int8 scale per output channel over [-127, 127]
(the grid ONNX Runtime's per-channel int8 weights use), and fake-quantized uint8 outputs
with moving-average min/max ranges; the straight-through estimator passes gradients. It is
fine-tuned on the labeled "training" dataset (a seeded held-out part scores every epoch;
the best epoch is kept; checkpoints every epoch, resumed after a restart). The trained
weights are exported to ONNX and quantized by ONNX Runtime's static QDQ quantizer with the
same scheme (weights land on the grid they were trained on; activation ranges calibrated
on the "calibration" dataset, else the training one).

In the same step, the input model is quantized the same way without training (plain
post-training quantization), both int8 models are scored on the "evaluation" dataset
(else the held-out part), and the report gives both accuracies and the gain. torch 2.13
has no PT2E (`torch.ao.quantization.quantize_pt2e` moved to torchao, not installed here),
hence the eager-mode fake-quant modules.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from pydantic import Field

from compressors.base import (
    ROLE_CALIBRATION,
    ROLE_EVALUATION,
    ROLE_TRAINING,
    Artifact,
    Dataset,
    JobInfo,
    StepContext,
    StepResult,
    Technique,
    TechniqueConfig,
)
from compressors.registry import register
from compressors.training.schedules import Schedule
from pareto_core.formats import FORMAT_ONNX, FORMAT_TORCH_EXPORT

NAME = "quantize.qat"


class QatConfig(TechniqueConfig):
    epochs: int = Field(5, ge=1, le=10_000)
    lr: float = Field(1e-4, gt=0.0, le=1.0)
    batch_size: int = Field(64, ge=1, le=65_536)
    schedule: Schedule = "cosine"
    holdout_fraction: float = Field(0.1, ge=0.0, lt=0.9)
    calibration_samples: int = Field(256, ge=1, le=100_000)
    max_samples: int = Field(0, ge=0, description="cap on training samples; 0 = all")


def qconfig() -> Any:
    import torch
    from torch.ao.quantization import (
        FakeQuantize,
        MovingAverageMinMaxObserver,
        PerChannelMinMaxObserver,
        QConfig,
    )

    activation = FakeQuantize.with_args(
        observer=MovingAverageMinMaxObserver,
        quant_min=0,
        quant_max=255,
        dtype=torch.quint8,
        qscheme=torch.per_tensor_affine,
    )
    weight = FakeQuantize.with_args(
        observer=PerChannelMinMaxObserver,
        quant_min=-127,
        quant_max=127,
        dtype=torch.qint8,
        qscheme=torch.per_channel_symmetric,
        ch_axis=0,
    )
    return QConfig(activation=activation, weight=weight)


@register
class QuantizeQat(Technique):
    name = NAME
    config_cls = QatConfig
    input_formats = frozenset({FORMAT_ONNX, FORMAT_TORCH_EXPORT})
    description = "Quantization-aware training (fake-quant), int8 QDQ; reports the gain over PTQ."

    def check_job(self, config: QatConfig, job: JobInfo, where: str) -> None:
        from compressors.distillation.checks import require_training_set

        require_training_set(job, NAME, "fine-tuning with fake quantization uses them")

    def apply(self, artifact: Artifact, config: QatConfig, ctx: StepContext) -> StepResult:
        from compressors.training.torch_bridge import onnx_source, torch_threads

        training = ctx.dataset(ROLE_TRAINING, NAME)
        calibration = ctx.datasets.get(ROLE_CALIBRATION, training)
        with torch_threads(ctx.threads):
            source = Artifact(
                onnx_source(artifact, ctx.work_dir),
                FORMAT_ONNX,
                artifact.signature,
                artifact.torch_source,
            )
            ptq = _int8(source, calibration, config, ctx, "ptq")
            ctx.progress(0.1, "post-training int8 done (the baseline)", {})
            trained, report = _train(source, training, config, ctx)
            qat = _int8(trained, calibration, config, ctx, "qat")
        scores = _compare(ptq, qat, ctx.datasets.get(ROLE_EVALUATION), report.pop("heldout"), ctx)
        ctx.progress(
            1.0, f"QAT int8 {scores['qat_int8']:.4f} vs PTQ int8 {scores['ptq_int8']:.4f}", {}
        )
        return StepResult(qat, {"training": report, "accuracy": scores})


def _int8(
    source: Artifact, calibration: Dataset, config: QatConfig, ctx: StepContext, tag: str
) -> Artifact:
    from compressors.quantization.static import QuantizeStatic, StaticConfig

    work = ctx.work_dir / tag
    work.mkdir(parents=True, exist_ok=True)
    static = StaticConfig(calibration_samples=config.calibration_samples, per_channel=True)
    sub = StepContext(
        work_dir=work,
        parent=ctx.parent,
        datasets={ROLE_CALIBRATION: calibration},
        is_cancelled=ctx.is_cancelled,
        threads=ctx.threads,
        seed=ctx.seed,
    )
    return QuantizeStatic().apply(source, static, sub).artifact


def _train(
    source: Artifact, training: Dataset, config: QatConfig, ctx: StepContext
) -> tuple[Artifact, dict[str, Any]]:
    import torch
    import torch.ao.quantization as tq

    from compressors.distillation.transfer import split_indices, student_outputs
    from compressors.graph.files import artifact_for
    from compressors.training.checkpoint import Checkpoint
    from compressors.training.finetune import labeled_arrays
    from compressors.training.loop import TrainPlan, fit
    from compressors.training.source_module import torch_module, verify_export
    from compressors.training.torch_bridge import example_inputs, torch_to_onnx

    names = [t.name for t in source.signature.inputs]
    arrays, labels = labeled_arrays(training, names, NAME)
    train_idx, held_idx = split_indices(
        len(labels), config.holdout_fraction, ctx.seed, config.max_samples
    )
    module, from_source = torch_module(source, ctx)
    if from_source:  # a transformer: fake-quantize its Linear layers (not the embeddings)
        for layer in module.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.qconfig = qconfig()
    else:
        module.qconfig = qconfig()
    module.train()
    with warnings.catch_warnings():  # "torch.ao.quantization is deprecated": see the doc
        warnings.simplefilter("ignore", DeprecationWarning)
        tq.prepare_qat(module, inplace=True)
    held = [a[held_idx] for a in arrays], labels[held_idx]

    def score(m: Any) -> float:
        return float((student_outputs(m, held[0]).argmax(-1).numpy() == held[1]).mean())

    def loss_fn(m: Any, batch: list[Any], ys: Any, idx: Any) -> Any:
        out = m(*batch)
        return torch.nn.functional.cross_entropy(
            out[0] if isinstance(out, list | tuple) else out, ys
        )

    plan = TrainPlan(config.epochs, config.lr, config.batch_size, config.schedule, seed=ctx.seed)
    report = fit(
        module,
        [a[train_idx] for a in arrays],
        labels[train_idx],
        plan,
        loss_fn,
        score_fn=score if len(held_idx) else None,
        checkpoint=Checkpoint(ctx.checkpoint_dir, f"{NAME}:{config.model_dump_json()}:{ctx.seed}"),
        progress=lambda f, message, metrics: ctx.progress(0.1 + 0.7 * f, message, metrics),
        is_cancelled=ctx.is_cancelled,
    )
    module.apply(tq.disable_fake_quant)
    module.apply(tq.disable_observer)
    example = example_inputs(source.signature, training)
    trained = torch_to_onnx(module, example, source.signature, ctx.work_dir / "qat_float.onnx")
    if from_source:
        report["export_max_abs_diff"] = verify_export(module, trained, example)
    feeds = {n: a[held_idx] for n, a in zip(names, arrays, strict=True)}
    report["heldout"] = Dataset("heldout", feeds, labels[held_idx])
    return artifact_for(trained.path), report


def _compare(
    ptq: Artifact, qat: Artifact, evaluation: Dataset | None, heldout: Dataset, ctx: StepContext
) -> dict[str, Any]:
    from compressors.graph.run import feeds_for, outputs_of

    data = evaluation if evaluation is not None and evaluation.labels is not None else heldout
    scores: dict[str, Any] = {"dataset": data.name, "samples": data.num_samples}
    for tag, model in (("ptq_int8", ptq), ("qat_int8", qat)):
        feeds = feeds_for(model.signature, data.inputs, data.num_samples, data.name)
        output = model.signature.outputs[0].name
        logits = outputs_of(model.path, feeds, output, ctx.threads, 256)
        scores[tag] = float((logits.argmax(-1) == np.asarray(data.labels)).mean())
    scores["gain"] = round(scores["qat_int8"] - scores["ptq_int8"], 6)
    return scores
