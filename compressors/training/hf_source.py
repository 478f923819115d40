"""A Hugging Face folder as the torch module of its task: the torch source of an uploaded
transformer, which the upload exports to ONNX and the training techniques start from
(instead of converting the ONNX graph with onnx2torch, which cannot convert transformers).

The folder was checked at upload (`runtimes.hf.folder`) and is checked again here; the
model class comes from transformers' Auto classes for the task, with
`trust_remote_code=False`, weights from `.safetensors` only, eager attention (a graph ONNX
Runtime's transformer optimizer can fuse) and every weight present (a missing one would
be silently random). The module takes `input_ids` and `attention_mask` and returns the
task's one output: `last_hidden_state`, the pooled (and normalized)
`sentence_embedding` as sentence-transformers computes it, or `logits`.

Importing this module does not import torch; every function does.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pareto_core.errors import InvalidArgument
from runtimes.hf.folder import (
    FEATURE_EXTRACTION,
    SENTENCE_EMBEDDING,
    SEQUENCE_CLASSIFICATION,
    TOKEN_CLASSIFICATION,
    Folder,
    Pooling,
    check_folder,
)

OUTPUT_NAMES = {
    FEATURE_EXTRACTION: "last_hidden_state",
    SENTENCE_EMBEDDING: "sentence_embedding",
    SEQUENCE_CLASSIFICATION: "logits",
    TOKEN_CLASSIFICATION: "logits",
}
_AUTO_CLASSES = {
    FEATURE_EXTRACTION: "AutoModel",
    SENTENCE_EMBEDDING: "AutoModel",
    SEQUENCE_CLASSIFICATION: "AutoModelForSequenceClassification",
    TOKEN_CLASSIFICATION: "AutoModelForTokenClassification",
}


def load_task_model(root: Path, task: str = "") -> Any:
    """The folder at `root` as a `TaskModule` (eval mode) for `task` ("" = the folder's)."""
    folder = check_folder(root, task)
    return task_module_class()(_pretrained(folder), folder.task, folder.pooling)


def _pretrained(folder: Folder) -> Any:
    """The transformers model of the folder's task; InvalidArgument when transformers has no
    such architecture, or the weights do not fit it."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # everything is on disk: never reach for a hub
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    where = f"config.json: {folder.architecture} (model_type {folder.model_type!r})"
    if folder.model_type not in CONFIG_MAPPING:
        raise InvalidArgument(
            f"{where} is not an architecture transformers {transformers.__version__} knows"
        )
    auto = getattr(transformers, _AUTO_CLASSES[folder.task])
    try:
        model, info = auto.from_pretrained(
            str(folder.root),
            trust_remote_code=False,
            local_files_only=True,
            use_safetensors=True,
            attn_implementation="eager",
            output_loading_info=True,
        )
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        raise InvalidArgument(f"{where}: transformers cannot build it: {str(exc)[:300]}") from None
    missing = sorted(info.get("missing_keys", ()))
    if missing:
        raise InvalidArgument(
            f"{where}: the weights lack {len(missing)} tensor(s) the architecture needs, "
            f"e.g. {missing[:3]}"
        )
    if getattr(model.config, "use_cache", False):
        model.config.use_cache = False  # one pass over the whole sequence: no key/value cache
    return model.eval()


def pool(hidden: Any, mask: Any, pooling: Pooling) -> Any:
    """sentence-transformers' pooling of `hidden` [batch, seq, dim] over the real tokens of
    `mask` [batch, seq]: each mode's vector, concatenated, optionally L2-normalized."""
    import torch

    weights = mask.unsqueeze(-1).to(hidden.dtype)
    counts = weights.sum(dim=1).clamp(min=1e-9)
    vectors = []
    for mode in pooling.modes:
        if mode == "cls":
            first = mask.to(torch.int32).argmax(dim=1)
            index = first.view(-1, 1, 1).expand(-1, 1, hidden.shape[-1])
            vectors.append(torch.gather(hidden, 1, index).squeeze(1))
        elif mode == "max":
            vectors.append(hidden.masked_fill(weights == 0, float("-inf")).max(dim=1).values)
        else:  # mean, mean_sqrt_len_tokens
            total = (hidden * weights).sum(dim=1)
            vectors.append(total / (counts if mode == "mean" else counts.sqrt()))
    pooled = vectors[0] if len(vectors) == 1 else torch.cat(vectors, dim=-1)
    return torch.nn.functional.normalize(pooled, p=2.0, dim=1) if pooling.normalize else pooled


@lru_cache(maxsize=1)
def task_module_class() -> type:
    import torch

    class TaskModule(torch.nn.Module):
        """(input_ids, attention_mask) -> the task's output (see the module docstring)."""

        def __init__(self, model: torch.nn.Module, task: str, pooling: Pooling | None) -> None:
            super().__init__()
            self.model = model
            self.task = task
            self.pooling = pooling

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            out = self.model(input_ids=input_ids, attention_mask=attention_mask)
            if self.task in (SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION):
                return out.logits
            hidden = out[0]
            if self.pooling is None:
                return hidden
            return pool(hidden, attention_mask, self.pooling)

    return TaskModule
