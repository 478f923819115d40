"""How much each attention head and FFN neuron matters, measured on the job's inputs, and
which ones to keep.

Every head and neuron gets a gate (a multiplier, 1.0) on its output: a head's slice of the
attention context before the output projection, a neuron's activation after the FFN's
non-linearity. Two measures:

* `taylor` (default): the first-order Taylor estimate of how much the model's OUTPUT moves
  when the gate goes from 1 to 0. dL/d(gate) = sum over tokens of a * dL/da for the
  gated activations a, i.e. the Taylor term |a * dL/da| of the issue, summed over the
  head or neuron. L is a random projection <y, r> of the output y (r Gaussian, padding
  positions of token-level outputs masked): E_r[(dL/dgate)^2] = ||J_gate||^2, the
  squared first-order change of the output when the unit is removed. A distillation loss
  against the parent's own outputs cannot be used here: before any pruning the student
  IS the parent, the loss is at its minimum and its gradient is zero everywhere. Labels
  are not needed, so embeddings, hidden states and logits are handled alike.
* `magnitude`: the mean norm of the unit's contribution to the residual stream on real
  tokens (head: its context slice through its columns of the output projection; neuron:
  |activation| x the norm of its column of the FFN's second Linear). No backward pass.

`select` keeps `1 - ratio` of the heads and neurons, per layer or globally (scores
normalized per layer, as Michel et al. 2019 do, so that layers of different scales
compare), with at least one head per layer and FFN widths rounded up to `round_to`.

Importing this module does not import torch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from compressors.pruning.transformer_model import Layer

Method = Literal["taylor", "magnitude"]
Batch = tuple[Any, Any]  # (input_ids, attention_mask) torch tensors


@dataclass
class Scores:
    heads: list[Any]  # per layer: tensor [heads]
    neurons: list[Any]  # per layer: tensor [neurons]


@contextlib.contextmanager
def _gates(found: list[Layer], gates: Scores, record: Callable[..., None] | None) -> Iterator[None]:
    """Multiply head and neuron outputs by `gates`; `record(kind, i, activation)` sees
    each gated activation (context [b, s, heads, size] or FFN activation [b, s, n])."""
    hooks = []

    def head_hook(i: int) -> Callable[..., Any]:
        def hook(module: Any, _inputs: Any, output: Any) -> Any:
            context, *rest = output
            shaped = context.view(*context.shape[:-1], module.num_attention_heads, -1)
            if record is not None:
                record("head", i, shaped)
            gated = (shaped * gates.heads[i].view(-1, 1)).reshape(context.shape)
            return (gated, *rest)

        return hook

    def neuron_hook(i: int) -> Callable[..., Any]:
        def hook(_module: Any, _inputs: Any, output: Any) -> Any:
            if record is not None:
                record("neuron", i, output)
            return output * gates.neurons[i]

        return hook

    for i, layer in enumerate(found):
        hooks.append(layer.attention.register_forward_hook(head_hook(i)))
        hooks.append(layer.module.intermediate.register_forward_hook(neuron_hook(i)))
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def _ones(found: list[Layer], grad: bool) -> Scores:
    import torch

    return Scores(
        [torch.ones(x.heads, requires_grad=grad) for x in found],
        [torch.ones(x.neurons, requires_grad=grad) for x in found],
    )


def _zeros(found: list[Layer]) -> Scores:
    import torch

    return Scores([torch.zeros(x.heads) for x in found], [torch.zeros(x.neurons) for x in found])


def taylor(module: Any, found: list[Layer], batches: Iterable[Batch], seed: int = 0) -> Scores:
    """Mean squared first-order output change per gate (see the module docstring)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    gates, total, count = _ones(found, True), _zeros(found), 0
    module.eval()
    for ids, mask in batches:
        with _gates(found, gates, None):
            out = module(ids, mask)
        r = torch.randn(out.shape, generator=generator)
        if out.dim() == 3:  # token-level: real tokens only
            r = r * mask.unsqueeze(-1).to(r.dtype)
        grads = torch.autograd.grad((out * r).sum(), [*gates.heads, *gates.neurons])
        n = len(found)
        for i in range(n):
            total.heads[i] += grads[i].detach() ** 2
            total.neurons[i] += grads[n + i].detach() ** 2
        count += 1
    return Scores(
        [h / max(count, 1) for h in total.heads], [x / max(count, 1) for x in total.neurons]
    )


def magnitude(module: Any, found: list[Layer], batches: Iterable[Batch]) -> Scores:
    """Mean norm of each unit's contribution to the residual stream on real tokens."""
    import torch

    total, tokens = _zeros(found), [0.0]
    current: dict[str, Any] = {}

    def record(kind: str, i: int, act: Any) -> None:
        real = current["mask"].unsqueeze(-1).to(act.dtype)
        if kind == "head":
            size = act.shape[-1]
            weight = found[i].attention_out.weight  # [hidden, heads * size]
            w = weight.view(weight.shape[0], -1, size)  # [hidden, heads, size]
            contrib = torch.einsum("bshd,ohd->bsho", act, w).norm(dim=-1)  # [b, s, heads]
            total.heads[i] += (contrib * real).sum(dim=(0, 1))
        else:
            column_norms = found[i].ffn_out.weight.norm(dim=0)  # [neurons]
            total.neurons[i] += (act.abs() * real).sum(dim=(0, 1)) * column_norms

    gates = _ones(found, False)
    module.eval()
    with torch.no_grad(), _gates(found, gates, record):
        for ids, mask in batches:
            current["mask"] = mask
            tokens[0] += float(mask.sum())
            module(ids, mask)
    n = max(tokens[0], 1.0)
    return Scores([h / n for h in total.heads], [x / n for x in total.neurons])


def measure(
    module: Any, found: list[Layer], batches: list[Batch], method: Method, seed: int = 0
) -> Scores:
    if method == "taylor":
        return taylor(module, found, batches, seed)
    return magnitude(module, found, batches)


def _top(scores: Any, count: int) -> list[int]:
    import torch

    return sorted(int(i) for i in torch.argsort(scores, descending=True)[:count])


def _round_up(count: int, round_to: int, limit: int) -> int:
    return min(limit, max(round_to, math.ceil(count / round_to) * round_to))


def _normalized(scores: list[Any]) -> list[Any]:
    return [s / s.norm().clamp(min=1e-12) for s in scores]


def _global_counts(scores: list[Any], ratio: float, floor: int) -> list[int]:
    """How many units each layer keeps when the lowest (normalized) scores across layers
    go, every layer keeping at least `floor`."""
    import torch

    normalized = _normalized(scores)
    flat = torch.cat(normalized)
    keep_total = max(len(scores) * floor, len(flat) - round(len(flat) * ratio))
    threshold_order = torch.argsort(flat, descending=True)
    owner = torch.cat([torch.full((len(s),), i) for i, s in enumerate(scores)])
    counts = [0] * len(scores)
    for index in threshold_order[:keep_total].tolist():
        counts[int(owner[index])] += 1
    return [max(floor, c) for c in counts]


def select(
    scores: Scores, head_ratio: float, ffn_ratio: float, scope: str, round_to: int = 1
) -> tuple[list[list[int]], list[list[int]]]:
    """(heads kept, neurons kept) per layer, indices into the layer's current units."""
    if scope == "global":
        head_counts = _global_counts(scores.heads, head_ratio, 1)
        neuron_counts = _global_counts(scores.neurons, ffn_ratio, 1)
    else:
        head_counts = [max(1, len(s) - round(len(s) * head_ratio)) for s in scores.heads]
        neuron_counts = [max(1, len(s) - round(len(s) * ffn_ratio)) for s in scores.neurons]
    neuron_counts = [
        _round_up(c, round_to, len(s)) for c, s in zip(neuron_counts, scores.neurons, strict=True)
    ]
    heads = [_top(s, c) for s, c in zip(scores.heads, head_counts, strict=True)]
    neurons = [_top(s, c) for s, c in zip(scores.neurons, neuron_counts, strict=True)]
    return heads, neurons
