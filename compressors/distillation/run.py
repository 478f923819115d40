"""The work of `distill.knowledge` in the job's worker (imports torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compressors.base import Artifact, Dataset, StepContext, StepResult
from compressors.distillation import losses
from compressors.distillation import student as students
from compressors.distillation.config import DistillConfig, fingerprint
from compressors.distillation.transfer import (
    TransferSet,
    build_transfer_set,
    check_output_shapes,
    first_output,
    heldout_score,
)
from compressors.training.checkpoint import Checkpoint
from compressors.training.loop import TrainPlan, fit


def distill(
    source: Artifact,
    teacher: Artifact,
    uploaded_student: Artifact | None,
    dataset: Dataset,
    config: DistillConfig,
    ctx: StepContext,
) -> StepResult:
    import torch

    from compressors.training.torch_bridge import example_inputs, onnx_source, torch_threads

    teacher_dir = ctx.work_dir / "teacher"
    teacher_dir.mkdir(parents=True, exist_ok=True)
    with torch_threads(ctx.threads):
        teacher_onnx = onnx_source(teacher, teacher_dir)
        use_labels = config.labels != "ignore" and dataset.labels is not None
        data = build_transfer_set(
            dataset,
            teacher_onnx,
            teacher.signature,
            holdout_fraction=config.holdout_fraction,
            max_samples=config.max_samples,
            use_labels=use_labels,
            seed=ctx.seed,
            threads=ctx.threads,
            teacher_hidden=config.teacher_hidden,
            work_dir=teacher_dir,
        )
        ctx.progress(0.05, f"the teacher labelled {len(data.train.targets)} samples", {})
        example = example_inputs(teacher.signature, dataset)
        module, origin = _student(source, uploaded_student, config, example, ctx)
        with torch.no_grad():
            check_output_shapes(first_output(module(*example)), data.train.targets, origin)
        training = _train(module, data, teacher_onnx, teacher, config, ctx)
        out = students.export_student(
            module, example, source.signature, ctx.work_dir / "student.onnx"
        )
        export_diff = _verify(module, out, example)
    report = {
        "student": origin,
        "teacher": config.teacher or "the step's input",
        "params_teacher": _onnx_params(teacher_onnx),
        "params_student": students.parameter_count(module),
        "objective": config.objective,
        "labels_used": use_labels,
        "transfer_samples": len(data.train.targets),
        "heldout_samples": len(data.heldout.targets) if data.heldout else 0,
        "training": training,
        **({"export_max_abs_diff": export_diff} if export_diff is not None else {}),
    }
    report["params_ratio"] = round(report["params_student"] / max(1, report["params_teacher"]), 4)
    ctx.progress(1.0, f"student: {report['params_ratio']:.2f}x the teacher's parameters", {})
    return StepResult(out, report)


def _verify(module: Any, out: Artifact, example: tuple) -> float | None:
    """The export checked against the trained module, for students built from a torch
    source (as the upload checks its export); None for the others."""
    from compressors.training.source_module import is_task_module, verify_export

    return verify_export(module, out, example) if is_task_module(module) else None


def _student(
    source: Artifact,
    uploaded: Artifact | None,
    config: DistillConfig,
    example: tuple,
    ctx: StepContext,
) -> tuple[Any, str]:
    if uploaded is not None:
        return students.load_student(uploaded), f"uploaded {uploaded.path.name}"
    if source.torch_source is not None:  # a transformer: keep `width` of its layers
        from compressors.training.source_module import keep_layers, torch_module

        module, _ = torch_module(source, ctx)
        module, kept = keep_layers(module, config.width)
        return module.train(), f"derived from the torch source: {kept}"
    from compressors.training.torch_bridge import onnx_source

    module = students.derive_student(
        onnx_source(source, ctx.work_dir), example, config.width, config.init, ctx.seed
    )
    return module, f"derived: width {config.width}, init {config.init}"


def _train(
    module: Any,
    data: TransferSet,
    teacher_onnx: Path,
    teacher: Artifact,
    config: DistillConfig,
    ctx: StepContext,
) -> dict[str, Any]:
    import torch

    targets = torch.from_numpy(data.train.targets)
    hidden = torch.from_numpy(data.train.hidden) if data.train.hidden is not None else None
    mixer = _Mixup(config.mixup, teacher_onnx, teacher, ctx) if config.mixup else None

    def loss_fn(model: Any, batch: list[Any], labels: Any, idx: Any) -> Any:
        wanted = targets[idx]
        if mixer is not None:
            batch, wanted, labels = mixer(batch, labels)
        outputs = model(*batch)
        out = first_output(outputs)
        if config.objective == "embedding":
            loss = losses.embedding_loss(out, wanted, config.embedding_loss)
        else:
            loss = losses.kd_loss(out, wanted, labels, config.temperature, config.alpha)
        if hidden is not None:
            loss = loss + config.hidden_weight * losses.embedding_loss(
                outputs[1], hidden[idx], "cosine"
            )
        return loss

    heldout = data.heldout
    plan = TrainPlan(
        epochs=config.epochs,
        lr=config.lr,
        batch_size=config.batch_size,
        schedule=config.schedule,
        warmup_steps=config.warmup_steps,
        patience=config.patience if heldout is not None else 0,
        seed=ctx.seed,
    )
    return fit(
        module,
        data.train.inputs,
        data.train.labels,
        plan,
        loss_fn,
        score_fn=(lambda m: heldout_score(m, heldout, config.objective)) if heldout else None,
        checkpoint=Checkpoint(ctx.checkpoint_dir, fingerprint(config, {"seed": ctx.seed})),
        progress=lambda f, message, metrics: ctx.progress(0.1 + 0.8 * f, message, metrics),
        is_cancelled=ctx.is_cancelled,
    )


class _Mixup:
    """Blends each batch with a shuffled copy of itself; the teacher labels the blend. With
    labels the hard loss sees the label of the larger share (lam >= 0.5 is enforced)."""

    def __init__(self, a: float, teacher_onnx: Path, teacher: Artifact, ctx: StepContext):
        from runtimes.onnxruntime_cpu import OnnxRuntimeCpu

        self.a = a
        self.rng = np.random.default_rng(ctx.seed)
        self.names = [t.name for t in teacher.signature.inputs]
        self.output = teacher.signature.outputs[0].name
        options = {"intra_op_threads": ctx.threads, "inter_op_threads": 1}
        self.session = OnnxRuntimeCpu().load(teacher_onnx, options)

    def __call__(self, batch: list[Any], labels: Any) -> tuple[list[Any], Any, Any]:
        import torch

        lam = float(self.rng.beta(self.a, self.a))
        lam = max(lam, 1.0 - lam)
        perm = torch.from_numpy(self.rng.permutation(len(batch[0])))
        mixed = losses.mixup(batch, lam, perm)
        feeds = {n: t.numpy() for n, t in zip(self.names, mixed, strict=True)}
        wanted = torch.from_numpy(self.session.run(feeds, [self.output])[self.output])
        return mixed, wanted, labels


def _onnx_params(path: Path) -> int:
    import onnx

    model = onnx.load(str(path))
    return int(sum(np.prod(t.dims) for t in model.graph.initializer if t.data_type == 1))
