"""prune.structured: remove whole channels/neurons, so the result is a smaller dense model.

The ONNX model (a .pt2 is exported to ONNX first) is converted to torch with onnx2torch (a
model uploaded as a Hugging Face folder is built from its torch source instead);
torch-pruning's DependencyGraph finds which layers are coupled (a conv's output channels,
the next conv's input channels, the flattened features of the classifier, ...) and removes
`ratio` of the channels of each group, ranked by the L1/L2 norm of their weights. The last
Conv/Linear layer (the classifier or embedding head) keeps its outputs, and the model's
output shapes are checked to be unchanged. Optional fine-tuning recovers the accuracy; the
result is exported back to ONNX with the parent's input and output names.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from compressors.base import Artifact, StepContext, StepResult, Technique
from compressors.registry import register
from compressors.training.finetune import FinetuneFields, finetune_in_step
from pareto_core.errors import FailedPrecondition
from pareto_core.formats import FORMAT_ONNX, FORMAT_TORCH_EXPORT


class StructuredPruneConfig(FinetuneFields):
    ratio: float = Field(0.5, gt=0.0, lt=1.0, description="fraction of channels removed")
    norm: Literal[1, 2] = Field(2, description="weight norm ranking the channels")
    global_pruning: bool = Field(False, description="rank channels across layers")
    round_to: int = Field(1, ge=1, le=1024, description="keep channel counts a multiple of")


def _layers(module: Any) -> dict[str, Any]:
    """Conv and Linear modules by name."""
    import torch

    kinds = (torch.nn.modules.conv._ConvNd, torch.nn.Linear)
    return {name: m for name, m in module.named_modules() if isinstance(m, kinds)}


def _width(layer: Any) -> int:
    return int(getattr(layer, "out_channels", 0) or getattr(layer, "out_features", 0))


def _run(module: Any, example: tuple[Any, ...]) -> tuple[list[tuple[int, ...]], list[Any]]:
    """(output shapes, Conv/Linear layers in the order they ran) for `example`."""
    import torch

    order: list[Any] = []
    hooks = [
        m.register_forward_hook(lambda mod, _i, _o: order.append(mod))
        for m in _layers(module).values()
    ]
    try:
        with torch.no_grad():
            out = module(*example)
    finally:
        for hook in hooks:
            hook.remove()
    outs = out if isinstance(out, list | tuple) else [out]
    return [tuple(o.shape) for o in outs], order


def prune_channels(module: Any, example: tuple[Any, ...], config: StructuredPruneConfig) -> None:
    """Remove channels from `module` in place with torch-pruning."""
    import torch_pruning as tp

    shapes, order = _run(module, example)
    if len({id(m) for m in order}) < 2:
        raise FailedPrecondition(
            "prune.structured needs at least one Conv/Linear layer besides the output layer; "
            f"this model has {len(set(map(id, order)))}"
        )
    try:
        pruner = tp.pruner.BasePruner(
            module,
            example,
            importance=tp.importance.MagnitudeImportance(p=config.norm),
            pruning_ratio=config.ratio,
            global_pruning=config.global_pruning,
            ignored_layers=[order[-1]],
            round_to=config.round_to if config.round_to > 1 else None,
        )
        pruner.step()
    except FailedPrecondition:
        raise
    except Exception as exc:
        raise FailedPrecondition(f"torch-pruning cannot prune this model: {exc}") from exc
    after, _ = _run(module, example)
    if after != shapes:
        raise FailedPrecondition(
            f"pruning would change the output shapes from {shapes} to {after}; "
            "this model's outputs depend on pruned channels"
        )


def _count(module: Any) -> int:
    return sum(p.numel() for p in module.parameters()) + sum(
        b.numel() for b in module.buffers() if b.is_floating_point()
    )


@register
class StructuredPrune(Technique):
    name = "prune.structured"
    config_cls = StructuredPruneConfig
    input_formats = frozenset({FORMAT_ONNX, FORMAT_TORCH_EXPORT})
    description = "Remove whole channels/neurons (torch-pruning), optional fine-tuning."

    def apply(
        self, artifact: Artifact, config: StructuredPruneConfig, ctx: StepContext
    ) -> StepResult:
        from compressors.training.source_module import prune_ffn, torch_module, verify_export
        from compressors.training.torch_bridge import example_inputs, torch_threads, torch_to_onnx

        dataset = ctx.dataset("training", self.name) if config.finetune_epochs else None
        with torch_threads(ctx.threads):
            module, from_source = torch_module(artifact, ctx)
            example = example_inputs(artifact.signature, dataset)
            before = {name: _width(m) for name, m in _layers(module).items()}
            params_before = _count(module)
            if from_source:  # a transformer: its feed-forward channels
                pruned = prune_ffn(module, config.ratio, config.norm)
            else:
                prune_channels(module, example, config)
                pruned = f"removed {config.ratio:.0%} of the channels"
            ctx.progress(0.1, pruned, {})
            finetuned = None
            if config.finetune_epochs:
                names = [t.name for t in artifact.signature.inputs]
                finetuned = finetune_in_step(module, config, ctx, self.name, names)
            out = torch_to_onnx(module, example, artifact.signature, ctx.work_dir / "pruned.onnx")
            export_diff = verify_export(module, out, example) if from_source else None
        after = {name: _width(m) for name, m in _layers(module).items()}
        report = {
            "ratio": config.ratio,
            "params_before": params_before,
            "params_after": _count(module),
            "layers": [
                {"layer": name, "channels_before": before[name], "channels_after": after[name]}
                for name in before
            ],
            "finetune": finetuned,
        }
        if export_diff is not None:
            report["export_max_abs_diff"] = export_diff
        ctx.progress(1.0, f"{report['params_before']} -> {report['params_after']} params", {})
        return StepResult(out, report)
