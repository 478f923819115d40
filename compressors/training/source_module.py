"""The torch module a training technique starts from, and the check of its ONNX export.

A model uploaded as a Hugging Face folder carries its torch source (`Artifact.torch_source`):
techniques build the module from it (`hf_source.load_task_model`, transformers' own
classes) instead of converting the ONNX graph with onnx2torch, which cannot convert
transformers. Other models go through onnx2torch as before. A module built from the
source is exported with the TorchScript exporter and checked against torch on the step's
own examples, as the upload checks its export (`hf_export.check_export`).

Importing this module does not import torch; every function does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compressors.base import Artifact, StepContext


def torch_module(artifact: Artifact, ctx: StepContext) -> tuple[Any, bool]:
    """(the module of `artifact`, whether it was built from its torch source)."""
    if artifact.torch_source is not None:
        from compressors.training.hf_source import load_task_model

        source = artifact.torch_source
        return load_task_model(source.path, source.task), True
    from compressors.training.torch_bridge import onnx_source, onnx_to_torch

    return onnx_to_torch(onnx_source(artifact, ctx.work_dir)), False


def is_task_module(module: Any) -> bool:
    from compressors.training.hf_source import task_module_class

    return isinstance(module, task_module_class())


def keep_layers(module: Any, width: float) -> tuple[Any, str]:
    """A TaskModule keeping `width` of its transformer layers, evenly spread and always the
    last (DistilBERT style: the student starts from the teacher's own layers)."""
    import torch

    layers = _encoder_layers(module.model)
    total = len(layers)
    keep_n = max(1, min(total, round(total * width)))
    keep = sorted({round(i * (total - 1) / max(1, keep_n - 1)) for i in range(keep_n)})
    if keep_n == 1:
        keep = [total - 1]
    kept = torch.nn.ModuleList(layers[i] for i in keep)
    _set_encoder_layers(module.model, kept)
    module.model.config.num_hidden_layers = len(kept)
    return module, f"{len(kept)} of {total} layers ({keep})"


def _encoder_layers(model: Any) -> Any:
    base = getattr(model, model.base_model_prefix, model)
    encoder = getattr(base, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if layers is None:
        from pareto_core.errors import FailedPrecondition

        raise FailedPrecondition(
            f"cannot find the transformer layers of a {type(model).__name__} "
            "(expected <base>.encoder.layer, as BERT-like models have)"
        )
    return layers


def _set_encoder_layers(model: Any, layers: Any) -> None:
    base = getattr(model, model.base_model_prefix, model)
    base.encoder.layer = layers


def verify_export(module: Any, out: Artifact, example: tuple[Any, ...]) -> float:
    """The largest absolute difference between `module` and its ONNX export on `example`
    (FailedPrecondition past the tolerance the upload uses)."""
    from compressors.training.hf_export import check_export

    names = [t.name for t in out.signature.inputs]
    batch = {
        name: np.ascontiguousarray(t.detach().numpy())
        for name, t in zip(names, example, strict=True)
    }
    module.eval()
    return check_export(module, Path(out.path), [batch])


def prune_ffn(module: Any, ratio: float, norm: int = 2) -> str:
    """Remove `ratio` of every transformer layer's feed-forward channels (the intermediate
    neurons: rows of `intermediate.dense`, columns of `output.dense`), the weakest by the
    L`norm` of their weights, in place. The residual width and the attention heads stay,
    so the output shape does not change. (torch-pruning, which prune.structured uses for
    CNNs and MLPs, would shrink the residual stream of a transformer inconsistently.)"""
    import torch

    layers = _encoder_layers(module.model)
    before = after = 0
    for layer in layers:
        up, down = layer.intermediate.dense, layer.output.dense
        width = up.out_features
        keep_n = max(1, round(width * (1.0 - ratio)))
        score = up.weight.detach().norm(p=norm, dim=1) + down.weight.detach().norm(p=norm, dim=0)
        keep = torch.sort(torch.topk(score, keep_n).indices).values
        layer.intermediate.dense = _linear_rows(up, keep)
        layer.output.dense = _linear_columns(down, keep)
        before, after = before + width, after + keep_n
    module.model.config.intermediate_size = after // len(layers)
    return f"feed-forward channels {before} -> {after} over {len(layers)} layers"


def _linear_rows(linear: Any, keep: Any) -> Any:
    import torch

    new = torch.nn.Linear(linear.in_features, len(keep), bias=linear.bias is not None)
    with torch.no_grad():
        new.weight.copy_(linear.weight[keep])
        if linear.bias is not None:
            new.bias.copy_(linear.bias[keep])
    return new


def _linear_columns(linear: Any, keep: Any) -> Any:
    import torch

    new = torch.nn.Linear(len(keep), linear.out_features, bias=linear.bias is not None)
    with torch.no_grad():
        new.weight.copy_(linear.weight[:, keep])
        if linear.bias is not None:
            new.bias.copy_(linear.bias)
    return new
