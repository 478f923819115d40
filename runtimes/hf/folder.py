"""What a Hugging Face model folder holds and means, read without torch and with limits.

`check_folder` is the whole check an uploaded folder gets before a helper process loads
it: `config.json` (an object naming a `model_type`, no `auto_map`: a folder's own code is
never run), weights only from `.safetensors` files whose headers are sound
(`safetensors_check`; pickle files are refused, never read), JSON files within size
limits, the tokenizer loadable by `tokenizers`, and sentence-transformers' `modules.json`
limited to what the export reproduces (Transformer, Pooling, Normalize). It also decides
the task and, with a tokenizer, the text settings. Every refusal names the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pareto_core.errors import FailedPrecondition, InvalidArgument
from runtimes.hf.safetensors_check import check_safetensors
from runtimes.hf.text import TextSettings, load_tokenizer

CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
SAFETENSORS_INDEX = "model.safetensors.index.json"
MAX_JSON_BYTES = 1024 * 1024
MAX_LARGE_JSON_BYTES = 64 * 1024 * 1024  # tokenizer.json, the shard index
MAX_POSITIONS = 1 << 20  # larger "model_max_length" values mean "no limit" in HF configs

FEATURE_EXTRACTION = "feature-extraction"
SENTENCE_EMBEDDING = "sentence-embedding"
SEQUENCE_CLASSIFICATION = "sequence-classification"
TOKEN_CLASSIFICATION = "token-classification"
TASKS = (FEATURE_EXTRACTION, SENTENCE_EMBEDDING, SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION)
# The architecture suffix (config.json "architectures") a task's weights come with.
_HEAD_OF = {
    SEQUENCE_CLASSIFICATION: "ForSequenceClassification",
    TOKEN_CLASSIFICATION: "ForTokenClassification",
}
_BASE_SUFFIXES = ("Model", "ForMaskedLM", "ForPreTraining")

_KEPT_FILES = (
    CONFIG,
    SAFETENSORS_INDEX,
    TOKENIZER,
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
)
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_ST = "sentence_transformers.models."
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens")
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


@dataclass(frozen=True)
class Pooling:
    """sentence-transformers' modules after the transformer: pooling modes (their outputs
    concatenated in this order), then L2 normalization or not."""

    modes: tuple[str, ...] = ("mean",)
    normalize: bool = False


@dataclass(frozen=True)
class Folder:
    root: Path
    task: str
    architecture: str
    model_type: str
    files: tuple[str, ...]  # what Pareto keeps: relative POSIX paths, config and tokenizer first
    parameters: int
    pooling: Pooling | None  # sentence-embedding only
    text: TextSettings | None  # None without a tokenizer.json


def read_text(path: Path, name: str, limit: int = MAX_JSON_BYTES) -> str:
    """The UTF-8 text in `path` (shown to users as `name`), refused past `limit` bytes."""
    size = path.stat().st_size
    if size > limit:
        raise InvalidArgument(f"{name} is {size} bytes, over the limit of {limit}")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{name} is not UTF-8 text: {exc}") from None


def read_json(path: Path, name: str, limit: int = MAX_JSON_BYTES) -> Any:
    """The JSON in `path` (shown to users as `name`), refused past `limit` bytes."""
    try:
        return json.loads(read_text(path, name, limit))
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument(f"{name} is not valid JSON: {str(exc)[:200]}") from None


def find_root(extracted: Path) -> Path:
    """The folder inside an extracted archive: where config.json is, at the top or in its
    only directory (archives of a folder often hold the folder itself)."""
    if (extracted / CONFIG).is_file():
        return extracted
    entries = [
        p for p in extracted.iterdir() if p.name != "__MACOSX" and not p.name.startswith(".")
    ]
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / CONFIG).is_file():
        return entries[0]
    raise InvalidArgument(
        "the Hugging Face folder has no config.json (looked at its top and in its only "
        "sub-folder); upload the folder that save_pretrained wrote"
    )


def check_folder(root: Path, task: str = "") -> Folder:
    """Check the folder at `root` (see the module docstring); `task` "" = from the folder."""
    config = _config(root)
    weights, parameters = _weights(root)
    architecture = _architecture(config)
    st_modules = _sentence_modules(root)
    task = _task(task, config, architecture, st_modules is not None)
    pooling = None
    if task == SENTENCE_EMBEDDING:
        pooling = st_modules[0] if st_modules else Pooling()
    text = _text_settings(root, config) if (root / TOKENIZER).is_file() else None
    kept = [name for name in _KEPT_FILES if (root / name).is_file()]
    kept += st_modules[1] if st_modules else []
    return Folder(
        root=root,
        task=task,
        architecture=architecture,
        model_type=str(config["model_type"]),
        files=(*kept, *weights),
        parameters=parameters,
        pooling=pooling,
        text=text,
    )


def _config(root: Path) -> dict[str, Any]:
    if not (root / CONFIG).is_file():
        raise InvalidArgument("the Hugging Face folder has no config.json")
    config = read_json(root / CONFIG, CONFIG)
    if not isinstance(config, dict):
        raise InvalidArgument("config.json is not a JSON object")
    if "auto_map" in config:
        raise InvalidArgument(
            "config.json names custom model code (auto_map); Pareto never runs a folder's "
            "own code (trust_remote_code), so only architectures built into transformers load"
        )
    if not isinstance(config.get("model_type"), str) or not config["model_type"]:
        raise InvalidArgument("config.json has no model_type, so no architecture can be chosen")
    return config


def _weights(root: Path) -> tuple[list[str], int]:
    """The .safetensors files (headers checked) and their parameter count."""
    names = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix == ".safetensors")
    if not names:
        pickles = sorted(p.name for p in root.iterdir() if p.suffix in _PICKLE_SUFFIXES)
        if pickles:
            raise FailedPrecondition(
                f"the folder's weights are only in {', '.join(pickles[:5])}: pickle files, "
                "which can run code when loaded, so Pareto never loads them. Convert them to "
                'safetensors where you trust the file, e.g. `python -c "from transformers '
                "import AutoModel; AutoModel.from_pretrained('DIR').save_pretrained('DIR')\"` "
                "(save_pretrained writes model.safetensors), and upload the folder again"
            )
        raise InvalidArgument("the Hugging Face folder has no weights (model.safetensors)")
    if (root / SAFETENSORS_INDEX).is_file():
        _check_index(root, names)
    return names, sum(check_safetensors(root / name, name) for name in names)


def _check_index(root: Path, names: list[str]) -> None:
    index = read_json(root / SAFETENSORS_INDEX, SAFETENSORS_INDEX, MAX_LARGE_JSON_BYTES)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise InvalidArgument(f"{SAFETENSORS_INDEX} has no weight_map object")
    missing = sorted({str(f) for f in weight_map.values()} - set(names))
    if missing:
        raise InvalidArgument(f"{SAFETENSORS_INDEX} names files the folder lacks: {missing[:5]}")


def _architecture(config: dict[str, Any]) -> str:
    architectures = config.get("architectures")
    if isinstance(architectures, list) and architectures and isinstance(architectures[0], str):
        return architectures[0]
    return str(config["model_type"])


def _task(task: str, config: dict[str, Any], architecture: str, sentence: bool) -> str:
    """The task asked for (checked against the weights), else the folder's: a
    sentence-transformers folder embeds sentences, a classification head classifies, a
    base model (or one with a pre-training head) extracts features."""
    if task and task not in TASKS:
        raise InvalidArgument(f"task must be one of {', '.join(TASKS)}, got {task[:100]!r}")
    head = next((t for t, suffix in _HEAD_OF.items() if architecture.endswith(suffix)), "")
    if task in _HEAD_OF and head != task:
        raise InvalidArgument(
            f"task {task!r} needs {_HEAD_OF[task]} weights, but the folder holds a "
            f"{architecture} (its head would be random)"
        )
    if task:
        return task
    if sentence:
        return SENTENCE_EMBEDDING
    if head:
        return head
    if architecture.endswith(_BASE_SUFFIXES) or not config.get("architectures"):
        return FEATURE_EXTRACTION
    raise InvalidArgument(f"cannot tell the task of a {architecture}; pass one: {', '.join(TASKS)}")


def _sentence_modules(root: Path) -> tuple[Pooling, list[str]] | None:
    """(the pooling, its files) of a sentence-transformers folder; None when it is not one."""
    if not (root / "modules.json").is_file():
        return None
    modules = read_json(root / "modules.json", "modules.json")
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise InvalidArgument("modules.json is not a list of module objects")
    kinds = [str(m.get("type", "")).removeprefix(_ST) for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or kinds[2:] not in ([], ["Normalize"]):
        raise InvalidArgument(
            f"modules.json chains {kinds}; Pareto exports Transformer, Pooling and an "
            "optional Normalize (in that order) only"
        )
    if str(modules[0].get("path", "")) not in ("", "."):
        raise InvalidArgument("modules.json: the Transformer module must be the folder itself")
    pooling_dir = _relative_dir(str(modules[1].get("path", "")))
    config_name = f"{pooling_dir}/config.json" if pooling_dir else "config.json"
    config = read_json(root / config_name, config_name)
    modes = _pooling_modes(config, config_name)
    return Pooling(modes, normalize=len(kinds) == 3), [config_name] if pooling_dir else []


def _relative_dir(path: str) -> str:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts or "\\" in path or path.startswith("/"):
        raise InvalidArgument(f"modules.json: module path {path[:100]!r} leaves the folder")
    return "/".join(parts)


def _pooling_modes(config: Any, name: str) -> tuple[str, ...]:
    if not isinstance(config, dict):
        raise InvalidArgument(f"{name} is not a JSON object")
    mode = config.get("pooling_mode")
    if mode is None:
        legacy = [m for key, m in _LEGACY_POOLING_KEYS.items() if config.get(key)]
        modes = tuple(legacy) or ("mean",)
    else:
        modes = (mode,) if isinstance(mode, str) else tuple(str(m) for m in mode)
    unsupported = [m for m in modes if m not in POOLING_MODES]
    if unsupported or not modes:
        raise InvalidArgument(
            f"{name}: pooling {list(modes)} is not supported; Pareto exports "
            f"{', '.join(POOLING_MODES)}"
        )
    return modes


def _text_settings(root: Path, config: dict[str, Any]) -> TextSettings:
    """How the gateway tokenizes for this model; InvalidArgument when the tokenizer fails."""
    tokenizer_json = read_text(root / TOKENIZER, TOKENIZER, MAX_LARGE_JSON_BYTES)
    tokenizer = load_tokenizer(tokenizer_json)
    tokenizer_config = _optional_object(root, "tokenizer_config.json")
    st_config = _optional_object(root, "sentence_bert_config.json")
    special_tokens = _optional_object(root, "special_tokens_map.json")
    pad_token = _pad_token(json.loads(tokenizer_json), tokenizer_config, special_tokens)
    found = tokenizer.token_to_id(pad_token) if pad_token else None
    pad_id: int = found if isinstance(found, int) else 0
    if found is None:
        configured = config.get("pad_token_id")
        pad_id = configured if isinstance(configured, int) else 0
        pad_token = tokenizer.id_to_token(pad_id) or pad_token or ""
    return TextSettings(
        max_tokens=_max_tokens(config, tokenizer_config, st_config),
        pad_id=int(pad_id),
        pad_token=str(pad_token),
        lowercase=bool(st_config.get("do_lower_case", False)),
    )


def _optional_object(root: Path, name: str) -> dict[str, Any]:
    if not (root / name).is_file():
        return {}
    data = read_json(root / name, name)
    if not isinstance(data, dict):
        raise InvalidArgument(f"{name} is not a JSON object")
    return data


def _pad_token(tokenizer_json: Any, *configs: dict[str, Any]) -> str:
    """The pad token: tokenizer.json's own padding, else the configs' pad_token."""
    padding = tokenizer_json.get("padding") if isinstance(tokenizer_json, dict) else None
    if isinstance(padding, dict) and isinstance(padding.get("pad_token"), str):
        return str(padding["pad_token"])
    for config in configs:
        token = config.get("pad_token")
        if isinstance(token, dict):
            token = token.get("content")
        if isinstance(token, str):
            return token
    return ""


def _max_tokens(
    config: dict[str, Any], tokenizer_config: dict[str, Any], st_config: dict[str, Any]
) -> int:
    """The smallest of sentence-transformers' max_seq_length, the tokenizer's
    model_max_length and the position table (max_position_embeddings); else 512."""
    limits = [
        value
        for value in (
            st_config.get("max_seq_length"),
            tokenizer_config.get("model_max_length"),
            config.get("max_position_embeddings"),
        )
        if isinstance(value, int) and not isinstance(value, bool) and 2 <= value <= MAX_POSITIONS
    ]
    return min(limits) if limits else 512
