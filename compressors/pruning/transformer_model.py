"""Attention heads and FFN neurons of a BERT-family transformers model, really removed.

transformers 5 dropped `PreTrainedModel.prune_heads` and the `pruned_heads` handling of
the configs (4.x rebuilt a pruned model from `config.pruned_heads` at load), so this
module does both itself, on any encoder whose layers have the BERT layout
(`attention.self.{query,key,value}`, `attention.output.dense`, `intermediate.dense`,
`output.dense`: BERT, MiniLM, RoBERTa, XLM-R, ELECTRA, ...):

* `prune_layer` slices the Linear layers of one layer: the rows of query/key/value and
  the columns of the attention output projection of the removed heads, the rows of the
  FFN's first Linear and the columns of its second for the removed neurons; the attention
  module's `num_attention_heads` / `all_head_size` follow (the head size is unchanged).
* the kept structure is written into config.json: `pruned_heads` ({layer: removed head
  indices}, the 4.x key, so transformers 4 rebuilds the heads itself) and
  `pareto_intermediate_sizes` (FFN width per layer, which no transformers version knows).
* `load_model` loads a folder, pruned or not: a pruned one is built from its config,
  reshaped to the recorded structure, then filled from `model.safetensors` with a strict
  state-dict load (every tensor present, every shape right). Plain `from_pretrained`
  refuses a pruned folder (shape mismatch), so readers of pruned folders must use it.

Importing this module does not import torch.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pareto_core.errors import FailedPrecondition, InvalidArgument

INTERMEDIATE_SIZES = "pareto_intermediate_sizes"
PRUNED_HEADS = "pruned_heads"
WEIGHTS = "model.safetensors"
# Files of the source folder the pruned folder does not copy (rewritten or stale).
_NOT_COPIED = frozenset({"config.json", WEIGHTS, "model.safetensors.index.json"})


@dataclass(frozen=True)
class Layer:
    """The modules of one encoder layer that pruning changes."""

    attention: Any  # has query, key, value, num_attention_heads, attention_head_size
    attention_out: Any  # Linear all_head_size -> hidden
    ffn_in: Any  # Linear hidden -> intermediate
    ffn_out: Any  # Linear intermediate -> hidden
    module: Any  # the whole layer (its output is the layer's hidden state)

    @property
    def heads(self) -> int:
        return int(self.attention.num_attention_heads)

    @property
    def neurons(self) -> int:
        return int(self.ffn_in.out_features)


def layers(model: Any) -> list[Layer]:
    """The encoder layers of a BERT-family model (or a module wrapping one as `.model`)."""
    inner = getattr(model, "model", None)  # a task module wrapping the transformers model
    base = model if inner is None or hasattr(model, "encoder") else inner
    base = getattr(base, "base_model", base)
    stack = getattr(getattr(base, "encoder", None), "layer", None)
    if stack is None:
        kind = type(model).__name__
        raise FailedPrecondition(
            f"prune.transformer supports BERT-family encoders (encoder.layer[*].attention, "
            f"intermediate, output); {kind} has no encoder.layer"
        )
    found = []
    for i, layer in enumerate(stack):
        try:
            found.append(
                Layer(
                    attention=layer.attention.self,
                    attention_out=layer.attention.output.dense,
                    ffn_in=layer.intermediate.dense,
                    ffn_out=layer.output.dense,
                    module=layer,
                )
            )
        except AttributeError as exc:
            raise FailedPrecondition(
                f"prune.transformer: encoder layer {i} does not have the BERT layout ({exc})"
            ) from None
    return found


def _keep_rows(linear: Any, index: Any) -> None:
    import torch

    with torch.no_grad():
        linear.weight = torch.nn.Parameter(linear.weight.index_select(0, index).clone())
        if linear.bias is not None:
            linear.bias = torch.nn.Parameter(linear.bias.index_select(0, index).clone())
    linear.out_features = len(index)


def _keep_columns(linear: Any, index: Any) -> None:
    import torch

    with torch.no_grad():
        linear.weight = torch.nn.Parameter(linear.weight.index_select(1, index).clone())
    linear.in_features = len(index)


def prune_layer(layer: Layer, keep_heads: Sequence[int], keep_neurons: Sequence[int]) -> None:
    """Keep only the heads `keep_heads` and FFN neurons `keep_neurons` (indices into the
    layer's current heads and neurons) of `layer`, in place."""
    import torch

    if not keep_heads or not keep_neurons:
        raise InvalidArgument("a layer keeps at least one head and one FFN neuron")
    size = int(layer.attention.attention_head_size)
    heads = sorted(set(keep_heads))
    rows = torch.tensor([h * size + j for h in heads for j in range(size)], dtype=torch.long)
    for linear in (layer.attention.query, layer.attention.key, layer.attention.value):
        _keep_rows(linear, rows)
    _keep_columns(layer.attention_out, rows)
    layer.attention.num_attention_heads = len(heads)
    layer.attention.all_head_size = len(heads) * size
    neurons = torch.tensor(sorted(set(keep_neurons)), dtype=torch.long)
    _keep_rows(layer.ffn_in, neurons)
    _keep_columns(layer.ffn_out, neurons)


def record_structure(model: Any, removed_heads: dict[int, list[int]]) -> None:
    """Write the pruned structure into the model's config (see the module docstring).
    `removed_heads`: original head indices removed, by layer (merged with earlier ones)."""
    config = model.config
    previous = {int(k): list(v) for k, v in (getattr(config, PRUNED_HEADS, None) or {}).items()}
    original = int(config.num_attention_heads)
    for index, removed in removed_heads.items():
        earlier = previous.get(index, [])
        alive = [h for h in range(original) if h not in earlier]  # current -> original
        previous[index] = sorted({*earlier, *(alive[h] for h in removed)})
    setattr(config, PRUNED_HEADS, {str(k): v for k, v in sorted(previous.items()) if v})
    setattr(config, INTERMEDIATE_SIZES, [layer.neurons for layer in layers(model)])


def save_folder(model: Any, source: Path, out: Path) -> Path:
    """Save the (pruned) `model` as a Hugging Face folder at `out`: config.json and
    model.safetensors from the model, every other file (tokenizer, sentence-transformers
    modules and pooling, README) copied from the `source` folder."""
    out.mkdir(parents=True, exist_ok=True)
    for item in Path(source).iterdir():
        if item.name in _NOT_COPIED or item.name.startswith("."):
            continue
        target = out / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        elif item.is_file():
            shutil.copy2(item, target)
    model.save_pretrained(str(out), safe_serialization=True)
    if not (out / WEIGHTS).is_file():
        raise FailedPrecondition(f"saving the pruned model did not write {WEIGHTS}")
    return out


def is_pruned(root: Path) -> bool:
    config = json.loads((Path(root) / "config.json").read_text())
    return bool(config.get(PRUNED_HEADS)) or INTERMEDIATE_SIZES in config


def load_model(root: Path, auto_class: str = "AutoModel") -> Any:
    """The transformers model of the folder at `root` (eager attention, eval mode), pruned
    or not: a pruned folder is rebuilt to its recorded structure, then loaded strictly."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    auto = getattr(transformers, auto_class)
    kwargs = {"attn_implementation": "eager"}
    if not is_pruned(root):
        return auto.from_pretrained(
            str(root),
            local_files_only=True,
            use_safetensors=True,
            trust_remote_code=False,
            **kwargs,
        ).eval()
    from safetensors.torch import load_file

    config = transformers.AutoConfig.from_pretrained(
        str(root), local_files_only=True, trust_remote_code=False
    )
    model = auto.from_config(config, **kwargs)
    removed = {int(k): v for k, v in (getattr(config, PRUNED_HEADS, None) or {}).items()}
    widths = getattr(config, INTERMEDIATE_SIZES, None)
    for i, layer in enumerate(layers(model)):
        gone = set(removed.get(i, ()))
        keep = [h for h in range(layer.heads) if h not in gone]
        neurons = int(widths[i]) if widths else layer.neurons
        prune_layer(layer, keep, list(range(neurons)))
    state = load_file(str(Path(root) / WEIGHTS))
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not _derived(k)]
    if missing or result.unexpected_keys:
        raise InvalidArgument(
            f"{root}: {WEIGHTS} does not fit the pruned structure: missing {missing[:3]}, "
            f"unexpected {list(result.unexpected_keys)[:3]}"
        )
    return model.eval()


def _derived(key: str) -> bool:
    """State-dict entries a model rebuilds itself (position id buffers)."""
    return key.endswith("position_ids") or key.endswith("token_type_ids")


def parameter_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def structure(model: Any) -> dict[str, list[int]]:
    """Heads and FFN width per layer."""
    found = layers(model)
    return {"heads": [x.heads for x in found], "ffn": [x.neurons for x in found]}
