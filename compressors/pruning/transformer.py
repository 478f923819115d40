"""prune.transformer: remove attention heads and FFN neurons of a BERT-family transformer,
recover by distillation from the parent, export to ONNX and check the export.

The input is the model's torch source, the Hugging Face folder it was uploaded as (an ONNX
graph of a transformer cannot be converted back to torch: onnx2torch fails on MiniLM).
Steps, all torch on CPU:

1. importance of every head and FFN neuron on the job's token inputs (`training`
   dataset, else `calibration`): first-order Taylor of the output change or output
   magnitude (`transformer_importance`);
2. keep `1 - head_ratio` of the heads (at least one per layer) and `1 - ffn_ratio` of the
   neurons, per layer or globally; the Linear layers are sliced (`transformer_model`), so
   the model is really smaller, and the structure is recorded in config.json;
3. the output projections of every attention and FFN block are re-fitted by least squares
   so that each block reproduces the parent's (`transformer_reconstruct`: seconds, and
   most of the quality lost in step 2 comes back);
4. `recovery_steps` steps of distillation from the parent: task output plus every
   layer's hidden state (`transformer_recovery`);
5. the pruned folder is saved (config.json + model.safetensors, tokenizer and pooling
   files copied) and exported to ONNX with the parent's input and output names; torch and
   ONNX Runtime must agree on the job's inputs.

The job hands the folder over as the first step's `Artifact.torch_source` and says at
CreateJob that the model has one (`ModelInfo.source_format == FORMAT_HF_FOLDER`); without
it the step is refused (FAILED_PRECONDITION), at CreateJob and again in `apply`. The
step's own output carries the pruned folder as its torch source, so a training step
(distill.knowledge, quantize.qat, prune.transformer again) can follow it in a recipe.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from compressors.base import (
    ROLE_CALIBRATION,
    ROLE_TRAINING,
    Artifact,
    Dataset,
    JobInfo,
    StepContext,
    StepResult,
    Technique,
    TechniqueConfig,
    TorchSource,
)
from compressors.registry import register
from pareto_core.errors import Cancelled, FailedPrecondition
from pareto_core.formats import FORMAT_HF_FOLDER

NAME = "prune.transformer"
NEEDS_FOLDER = f"{NAME} needs a model uploaded as a Hugging Face folder"
TOKEN_INPUTS = ("input_ids", "attention_mask")
EXPORT_TOLERANCE = 1e-3  # of max(1, the largest output magnitude)
FOLDER = "pruned-hf"


class TransformerPruneConfig(TechniqueConfig):
    head_ratio: float = Field(0.5, ge=0.0, lt=1.0, description="fraction of heads removed")
    ffn_ratio: float = Field(0.5, ge=0.0, lt=1.0, description="fraction of FFN neurons removed")
    scope: Literal["per_layer", "global"] = Field(
        "per_layer", description="ratio in every layer, or across layers by normalized score"
    )
    importance: Literal["taylor", "magnitude"] = Field(
        "magnitude",
        description="output magnitude (best with the re-fit), or first-order Taylor",
    )
    importance_batches: int = Field(8, ge=1, le=1000, description="batches scored")
    ffn_round_to: int = Field(8, ge=1, le=1024, description="FFN widths a multiple of")
    recovery_steps: int = Field(200, ge=0, le=100_000, description="distillation steps")
    learning_rate: float = Field(5e-4, gt=0.0, le=1.0)
    batch_size: int = Field(16, ge=1, le=1024)
    hidden_weight: float = Field(1.0, ge=0.0, le=100.0, description="hidden-state loss weight")
    reconstruct_batches: int = Field(
        32, ge=0, le=10_000, description="batches to re-fit output projections on (0: off)"
    )
    reconstruct_ridge: float = Field(
        1.0, gt=0.0, le=1000.0, description="pull of the re-fit towards the pruned weights"
    )

    @model_validator(mode="after")
    def _removes_something(self) -> TransformerPruneConfig:
        if self.head_ratio == 0.0 and self.ffn_ratio == 0.0:
            raise ValueError("head_ratio and ffn_ratio are both 0: nothing would be removed")
        return self


def transformers_model(module: Any) -> Any:
    """The transformers model inside a task module (or the module itself)."""
    inner = getattr(module, "model", None)
    return inner if inner is not None and hasattr(inner, "config") else module


def prune_module(
    parent: Any,
    config: TransformerPruneConfig,
    inputs: dict[str, np.ndarray],
    seed: int = 0,
    progress: Callable[[float, str], None] = lambda f, m: None,
    cancelled: Callable[[], bool] = lambda: False,
) -> tuple[Any, dict[str, Any]]:
    """A pruned, re-fitted and recovered copy of the task module `parent` (taking
    input_ids and attention_mask), and the report of what was removed and how the
    re-fit and recovery went."""
    from compressors.pruning import transformer_importance as imp
    from compressors.pruning import transformer_model as tm
    from compressors.pruning.transformer_reconstruct import reconstruct
    from compressors.pruning.transformer_recovery import batches, distill

    parent.eval()
    student = copy.deepcopy(parent)
    found = tm.layers(student)
    before, params_before = tm.structure(student), tm.parameter_count(student)
    scored = list(batches(inputs, config.batch_size, config.importance_batches, seed))
    scores = imp.measure(student, found, scored, config.importance, seed)
    heads, neurons = imp.select(
        scores, config.head_ratio, config.ffn_ratio, config.scope, config.ffn_round_to
    )
    removed = {}
    for i, (layer, keep_h, keep_n) in enumerate(zip(found, heads, neurons, strict=True)):
        removed[i] = [h for h in range(layer.heads) if h not in keep_h]
        tm.prune_layer(layer, keep_h, keep_n)
    tm.record_structure(transformers_model(student), removed)
    after = tm.structure(student)
    progress(
        0.05,
        f"kept {sum(after['heads'])}/{sum(before['heads'])} heads, "
        f"{sum(after['ffn'])}/{sum(before['ffn'])} FFN neurons",
    )
    residuals = None
    if config.reconstruct_batches:
        rows = len(inputs["input_ids"])  # each row at most once: repeats add nothing
        count = min(config.reconstruct_batches, -(-rows // config.batch_size))
        fit = list(batches(inputs, config.batch_size, count, seed + 1))
        residuals = reconstruct(
            student, parent, fit, config.reconstruct_ridge,
            lambda done, total: progress(0.05 + 0.1 * done / total, "re-fitting projections"),
        )  # fmt: skip
    recovery = None
    if config.recovery_steps and not cancelled():
        steps = config.recovery_steps

        def step_done(step: int, loss: float) -> None:
            if step % max(1, steps // 20) == 0 or step == steps:
                progress(0.15 + 0.75 * step / steps, f"distillation step {step}/{steps}")

        recovery = distill(
            student, parent, inputs, steps=steps, batch_size=config.batch_size,
            lr=config.learning_rate, hidden_weight=config.hidden_weight, seed=seed,
            progress=step_done, cancelled=cancelled,
        )  # fmt: skip
    report = {
        "importance": config.importance,
        "scope": config.scope,
        "heads_before": before["heads"],
        "heads_after": after["heads"],
        "ffn_before": before["ffn"],
        "ffn_after": after["ffn"],
        "removed_heads": {str(k): v for k, v in removed.items()},
        "params_before": params_before,
        "params_after": tm.parameter_count(student),
        "reconstruction_residuals": residuals and [round(r, 4) for r in residuals],
        "recovery": recovery,
    }
    return student, report


def token_inputs(dataset: Dataset) -> dict[str, np.ndarray]:
    missing = [name for name in TOKEN_INPUTS if name not in dataset.inputs]
    if missing:
        raise FailedPrecondition(
            f"{NAME} needs token inputs {list(TOKEN_INPUTS)}; dataset {dataset.name!r} "
            f"lacks {missing}"
        )
    return {name: np.asarray(dataset.inputs[name], dtype=np.int64) for name in TOKEN_INPUTS}


def check_export(module: Any, onnx_path: Path, inputs: dict[str, np.ndarray]) -> float:
    """Largest |torch - ONNX Runtime| on a few rows (two batch shapes); FailedPrecondition
    past EXPORT_TOLERANCE x the output's magnitude."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for rows in (slice(0, 4), slice(4, 5)):
        feeds = {k: v[rows] for k, v in inputs.items()}
        if not len(feeds["input_ids"]):
            continue
        with torch.no_grad():
            want = module(*(torch.from_numpy(feeds[k]) for k in TOKEN_INPUTS)).numpy()
        got = session.run(None, feeds)[0]
        diff = float(np.abs(got - want).max())
        if diff > EXPORT_TOLERANCE * max(1.0, float(np.abs(want).max())):
            raise FailedPrecondition(f"the pruned model's ONNX export differs from torch by {diff}")
        worst = max(worst, diff)
    return worst


@register
class TransformerPrune(Technique):
    name = NAME
    config_cls = TransformerPruneConfig
    description = (
        "Remove attention heads and FFN neurons of a BERT-family transformer (Hugging Face "
        "folder source), distil from the parent, export to ONNX."
    )

    def check_job(self, config: TechniqueConfig, job: JobInfo, where: str) -> None:
        model = job.model
        if model.source_format != FORMAT_HF_FOLDER:
            raise FailedPrecondition(
                f"{where}: {NEEDS_FOLDER} (its torch source); model {model.name!r} version "
                f"{model.version} was uploaded as {model.format}, which has none"
            )
        names = [t.name for t in model.signature.inputs]
        if names != list(TOKEN_INPUTS):
            raise FailedPrecondition(
                f"{where}: {NAME} needs a model with inputs {list(TOKEN_INPUTS)}, "
                f"model {model.name!r} has {names}"
            )

    def apply(
        self, artifact: Artifact, config: TransformerPruneConfig, ctx: StepContext
    ) -> StepResult:
        from compressors.pruning.transformer_model import save_folder
        from compressors.training.hf_source import load_task_model
        from compressors.training.torch_bridge import torch_threads, torch_to_onnx

        source = self._source(artifact)
        role = ROLE_TRAINING if ROLE_TRAINING in ctx.datasets else ROLE_CALIBRATION
        dataset = ctx.dataset(role, NAME)
        inputs = token_inputs(dataset)
        with torch_threads(ctx.threads):
            parent = load_task_model(source.path, source.task)
            student, report = prune_module(
                parent, config, inputs, ctx.seed,
                lambda f, m: ctx.progress(f, m, {}), ctx.is_cancelled,
            )  # fmt: skip
            if ctx.is_cancelled():
                raise Cancelled(f"{NAME} cancelled during distillation")
            folder = save_folder(transformers_model(student), source.path, ctx.work_dir / FOLDER)
            example = tuple(_tensor(inputs[k][:2]) for k in TOKEN_INPUTS)
            out = torch_to_onnx(student, example, artifact.signature, ctx.work_dir / "pruned.onnx")
            report["export_max_abs_diff"] = check_export(student, out.path, inputs)
        report.update(dataset=dataset.name, folder=folder.name)
        ctx.progress(1.0, f"{report['params_before']} -> {report['params_after']} params", {})
        # the pruned folder is the torch source of what follows in the recipe
        return StepResult(replace(out, torch_source=TorchSource(folder, source.task)), report)

    @staticmethod
    def _source(artifact: Artifact) -> TorchSource:
        """The torch source the step starts from: the uploaded model's own artifact has one,
        and so has the output of a prune.transformer step; ONNX steps drop it."""
        if artifact.torch_source is None:
            raise FailedPrecondition(
                f"{NEEDS_FOLDER} (its torch source), and no ONNX step may come before it in "
                "the recipe: upload the folder (config.json, model.safetensors, tokenizer) "
                "instead of an ONNX file"
            )
        names = [t.name for t in artifact.signature.inputs]
        if names != list(TOKEN_INPUTS):
            raise FailedPrecondition(
                f"{NAME} needs a model with inputs {list(TOKEN_INPUTS)}, this one has {names}"
            )
        return artifact.torch_source


def _tensor(array: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(array))
