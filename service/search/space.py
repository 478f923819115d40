"""The search space: which chains of techniques a trial may run, and their parameters.

A trial first picks a *chain* (one categorical parameter, e.g. "prune.structured+
quantize.static"), then the parameters of each technique in it, named
"<technique>.<field>" (a conditional space: a parameter exists only in trials whose chain
uses its technique). Chains run a *reducing* technique (fewer channels, weights, ranks or
distinct values, or a smaller student) before a *quantizing* one, never the reverse: a
quantized graph cannot be pruned or factorized.

What is searched is what changes size, speed and quality: sparsity, rank energy, cluster
count, student width, bits and calibration method, per-channel scales, QDQ vs QOperator,
how many layers stay float32. What is not (fine-tuning epochs, learning rates) is fixed
here, small, and used only where the datasets allow it.

On a transformer (self-attention in the parent, `SpaceContext.transformer`), quantize.static
samples what matters there (see `_static_transformer`): SmoothQuant and its alpha, the
calibration methods that keep MiniLM within 1%, how the embedding tables are stored, and
which linear layers stay float; per-tensor weights and QOperator (every op quantized) are
not sampled, they break transformers.

`trial` is anything with Optuna's `suggest_categorical/suggest_float/suggest_int`, so this
module imports no Optuna and is unit-tested with a fake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from compressors.base import ROLE_CALIBRATION, ROLE_EVALUATION, ROLE_TRAINING

REDUCING = (
    "prune.structured",
    "prune.magnitude",
    "low_rank.svd",
    "cluster.kmeans",
    "distill.knowledge",
)
QUANTIZING = ("quantize.dynamic", "quantize.static", "quantize.accuracy_aware", "convert.fp16")
SEARCHABLE = REDUCING + QUANTIZING
# Explored only when a search names them (search.techniques): prune.transformer needs
# the model's Hugging Face folder and takes a minute (re-fit only) or more (distillation);
# quantize.weight_only makes MiniLM 4-8x smaller but slower on CPU, so it wins only where
# size is an objective.
OPT_IN_REDUCING = ("prune.transformer",)
OPT_IN_QUANTIZING = ("quantize.weight_only",)
OPT_IN = OPT_IN_REDUCING + OPT_IN_QUANTIZING
EXPLORABLE = SEARCHABLE + OPT_IN
CHAIN_SEPARATOR = "+"

# prune.transformer's distillation from the parent: none (the least-squares re-fit alone,
# seconds) or 200 steps (minutes on a CPU)
PRUNE_RECOVERY_STEPS = (0, 200)
FINETUNE_EPOCHS = 5  # structured pruning recovers with a short fine-tuning (labels needed)
MAGNITUDE_FINETUNE_EPOCHS = 3
DISTILL_EPOCHS = 10
KMEANS_CLUSTERS = (4, 8, 16, 32, 64)


class TrialLike(Protocol):
    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float: ...

    def suggest_int(self, name: str, low: int, high: int) -> int: ...


@dataclass(frozen=True)
class SpaceContext:
    """What the datasets allow: fine-tuning needs labels, calibration needs its dataset."""

    roles: frozenset[str]
    labeled_training: bool
    seed: int = 0
    transformer: bool = False  # the parent has self-attention


def needs(technique: str, ctx: SpaceContext) -> str | None:
    """None when `technique` can run with these datasets, else what is missing."""
    if technique == "quantize.static" and ROLE_CALIBRATION not in ctx.roles:
        return "needs a calibration dataset (datasets.calibration)"
    if technique == "distill.knowledge" and ROLE_TRAINING not in ctx.roles:
        return "needs a training dataset (datasets.training)"
    if technique == "quantize.accuracy_aware" and not (
        {ROLE_EVALUATION, ROLE_CALIBRATION} & ctx.roles
    ):
        return "needs an evaluation or calibration dataset to measure sensitivity"
    if technique == "prune.transformer" and not ({ROLE_TRAINING, ROLE_CALIBRATION} & ctx.roles):
        return "needs token inputs to score heads and distil (datasets.training or calibration)"
    return None


def _structured(trial: TrialLike, ctx: SpaceContext) -> dict[str, Any]:
    epochs = FINETUNE_EPOCHS if ctx.labeled_training else 0
    ratio = trial.suggest_float("prune.structured.ratio", 0.2, 0.75, step=0.05)
    return {"ratio": round(ratio, 2), "finetune_epochs": epochs}


def _magnitude(trial: TrialLike, ctx: SpaceContext) -> dict[str, Any]:
    epochs = MAGNITUDE_FINETUNE_EPOCHS if ctx.labeled_training else 0
    sparsity = trial.suggest_float("prune.magnitude.sparsity", 0.3, 0.95, step=0.05)
    scope = trial.suggest_categorical("prune.magnitude.scope", ["global", "per_layer"])
    return {"sparsity": round(sparsity, 2), "scope": scope, "finetune_epochs": epochs}


def _svd(trial: TrialLike, ctx: SpaceContext) -> dict[str, Any]:
    # the energy left out, on a log scale: 0.1% .. 40% (transformers only survive the
    # smallest cuts, small CNNs a few percent)
    dropped = trial.suggest_float("low_rank.svd.dropped_energy", 0.001, 0.4, log=True)
    return {"energy": round(1.0 - dropped, 4)}


def _kmeans(trial: TrialLike, ctx: SpaceContext) -> dict[str, Any]:
    clusters = trial.suggest_categorical("cluster.kmeans.clusters", list(KMEANS_CLUSTERS))
    return {"clusters": int(clusters), "seed": ctx.seed}


def _distill(trial: TrialLike, ctx: SpaceContext) -> dict[str, Any]:
    width = trial.suggest_float("distill.knowledge.width", 0.25, 0.75, step=0.05)
    return {"width": round(width, 2), "epochs": DISTILL_EPOCHS}


def _dynamic(trial: TrialLike, ctx: SpaceContext) -> dict[str, Any]:
    per_channel = trial.suggest_categorical("quantize.dynamic.per_channel", [True, False])
    return {"per_channel": bool(per_channel)}


def _static(trial: TrialLike, ctx: SpaceContext) -> dict[str, Any]:
    if ctx.transformer:
        return _static_transformer(trial, ctx)
    method = trial.suggest_categorical(
        "quantize.static.method", ["minmax", "entropy", "percentile"]
    )
    per_channel = trial.suggest_categorical("quantize.static.per_channel", [True, False])
    fmt = trial.suggest_categorical("quantize.static.format", ["qdq", "qoperator"])
    return {"method": method, "per_channel": bool(per_channel), "format": fmt}


# Linear layers a transformer trial keeps float, by position among the linear layers in
# graph order (quantize.static's float_linear_layers; any transformer has at least two).
FLOAT_LINEAR = {
    "none": (),
    "last": (-1,),  # the last FFN output projection: it feeds the output directly
    "last_two": (-2, -1),  # the last FFN, both projections
    "first_and_last": (0, -1),
}


def _static_transformer(trial: TrialLike, ctx: SpaceContext) -> dict[str, Any]:
    """Transformer mode: per-channel QDQ on the linear layers (the technique's own choice);
    entropy calibration only after SmoothQuant (alone it clips MiniLM's outlier channels:
    cosine 0.958)."""
    config: dict[str, Any] = {"per_channel": True, "format": "qdq"}
    if trial.suggest_categorical("quantize.static.smooth_quant", [False, True]):
        alpha = trial.suggest_float("quantize.static.smooth_quant_alpha", 0.4, 0.8, step=0.1)
        config["smooth_quant_alpha"] = round(alpha, 2)
        methods = ["minmax", "percentile", "entropy"]
        config["method"] = trial.suggest_categorical("quantize.static.method_smoothed", methods)
    else:
        methods = ["minmax", "percentile"]
        config["method"] = trial.suggest_categorical("quantize.static.method_plain", methods)
    scales = trial.suggest_categorical("quantize.static.embedding_scales", ["column", "block"])
    small_bits = trial.suggest_categorical("quantize.static.small_table_bits", [4, 8])
    config |= {"embedding_scales": scales, "small_table_bits": int(small_bits)}
    if scales == "block" or small_bits == 4:
        block = trial.suggest_categorical("quantize.static.embedding_block", [32, 64, 128])
        config["embedding_block"] = int(block)
    kept = trial.suggest_categorical("quantize.static.float_linear_layers", list(FLOAT_LINEAR))
    if FLOAT_LINEAR[kept]:
        config["float_linear_layers"] = list(FLOAT_LINEAR[kept])
    return config


def _accuracy_aware(trial: TrialLike, ctx: SpaceContext) -> dict[str, Any]:
    bases = ["dynamic", "static"] if ROLE_CALIBRATION in ctx.roles else ["dynamic"]
    base = trial.suggest_categorical("quantize.accuracy_aware.base", bases)
    fp32 = trial.suggest_int("quantize.accuracy_aware.max_fp32_nodes", 1, 8)
    return {"base": base, "max_fp32_nodes": int(fp32)}


def _weight_only(trial: TrialLike, ctx: SpaceContext) -> dict[str, Any]:
    bits = trial.suggest_categorical("quantize.weight_only.bits", [4, 8])
    gptq = ["gptq"] if ROLE_CALIBRATION in ctx.roles else []
    if bits == 4:
        algorithm = trial.suggest_categorical(
            "quantize.weight_only.algorithm", ["rtn", "hqq", *gptq]
        )
    else:  # hqq has no 8-bit CPU kernel; its own parameter (fixed choices per name)
        algorithm = trial.suggest_categorical("quantize.weight_only.algorithm_8bit", ["rtn", *gptq])
    block = trial.suggest_categorical("quantize.weight_only.block_size", [32, 64, 128])
    return {"bits": int(bits), "algorithm": algorithm, "block_size": int(block)}


def _prune_transformer(trial: TrialLike, ctx: SpaceContext) -> dict[str, Any]:
    heads = trial.suggest_float("prune.transformer.head_ratio", 0.0, 0.6, step=0.05)
    ffn = trial.suggest_float("prune.transformer.ffn_ratio", 0.1, 0.6, step=0.05)
    scope = trial.suggest_categorical("prune.transformer.scope", ["per_layer", "global"])
    steps = trial.suggest_categorical("prune.transformer.recovery_steps", PRUNE_RECOVERY_STEPS)
    return {
        "head_ratio": round(heads, 2),
        "ffn_ratio": round(ffn, 2),
        "scope": scope,
        "recovery_steps": int(steps),
    }


def _fp16(trial: TrialLike, ctx: SpaceContext) -> dict[str, Any]:
    return {"keep_io_types": True}


SAMPLERS: dict[str, Callable[[TrialLike, SpaceContext], dict[str, Any]]] = {
    "prune.structured": _structured,
    "prune.magnitude": _magnitude,
    "low_rank.svd": _svd,
    "cluster.kmeans": _kmeans,
    "distill.knowledge": _distill,
    "quantize.dynamic": _dynamic,
    "quantize.static": _static,
    "quantize.accuracy_aware": _accuracy_aware,
    "convert.fp16": _fp16,
    "quantize.weight_only": _weight_only,
    "prune.transformer": _prune_transformer,
}


class _Defaults:
    """A trial stand-in answering every suggestion with a typical value (for CreateJob's
    checks of a technique against the job, which need one concrete config)."""

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return choices[0]

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        return (low + high) / 2

    def suggest_int(self, name: str, low: int, high: int) -> int:
        return low


def typical_config(technique: str, ctx: SpaceContext) -> dict[str, Any]:
    return SAMPLERS[technique](_Defaults(), ctx)


# The first guess at each technique alone: what a user tries first. A fresh study starts
# with these (as far as the budget allows, quantizers first), then the sampler takes over.
FIRST_GUESSES: dict[str, dict[str, Any]] = {
    "quantize.dynamic": {"quantize.dynamic.per_channel": True},
    "quantize.static": {
        "quantize.static.method": "minmax",
        "quantize.static.per_channel": True,
        "quantize.static.format": "qdq",
    },
    "convert.fp16": {},
    "quantize.accuracy_aware": {
        "quantize.accuracy_aware.base": "dynamic",
        "quantize.accuracy_aware.max_fp32_nodes": 4,
    },
    "prune.structured": {"prune.structured.ratio": 0.5},
    "prune.magnitude": {"prune.magnitude.sparsity": 0.5, "prune.magnitude.scope": "global"},
    "low_rank.svd": {"low_rank.svd.dropped_energy": 0.05},
    "cluster.kmeans": {"cluster.kmeans.clusters": 16},
    "distill.knowledge": {"distill.knowledge.width": 0.5},
    "quantize.weight_only": {
        "quantize.weight_only.bits": 4,
        "quantize.weight_only.algorithm": "rtn",
        "quantize.weight_only.block_size": 32,
    },
    "prune.transformer": {
        "prune.transformer.head_ratio": 0.25,
        "prune.transformer.ffn_ratio": 0.25,
        "prune.transformer.scope": "per_layer",
        "prune.transformer.recovery_steps": 0,
    },
}


# quantize.static's defaults in transformer mode (the transformer space's parameters)
TRANSFORMER_FIRST_GUESSES: dict[str, dict[str, Any]] = {
    "quantize.static": {
        "quantize.static.smooth_quant": False,
        "quantize.static.method_plain": "minmax",
        "quantize.static.embedding_scales": "column",
        "quantize.static.small_table_bits": 4,
        "quantize.static.embedding_block": 32,
        "quantize.static.float_linear_layers": "none",
    },
}


def first_guesses(
    options: Sequence[str], budget: int, transformer: bool = False
) -> list[dict[str, Any]]:
    """Trial parameters of each single-technique chain at its first guess, quantizers
    first, at most half the trial budget."""
    order = (*QUANTIZING, *OPT_IN_QUANTIZING, *REDUCING, *OPT_IN_REDUCING)
    singles = [t for t in order if t in options]
    guesses = {**FIRST_GUESSES, **(TRANSFORMER_FIRST_GUESSES if transformer else {})}
    return [{"chain": t, **guesses[t]} for t in singles[: max(0, budget // 2)]]


def chains(techniques: Sequence[str], max_steps: int) -> list[str]:
    """Every chain of the allowed techniques: single steps, then reduce+quantize pairs."""
    allowed = [t for t in EXPLORABLE if t in techniques]
    found = list(allowed)
    if max_steps >= 2:
        reducing = [t for t in allowed if t in (*REDUCING, *OPT_IN_REDUCING)]
        quantizing = [t for t in allowed if t in (*QUANTIZING, *OPT_IN_QUANTIZING)]
        found += [f"{r}{CHAIN_SEPARATOR}{q}" for r in reducing for q in quantizing]
    return found


def sample_steps(
    trial: TrialLike, options: Sequence[str], ctx: SpaceContext
) -> tuple[str, list[dict[str, Any]]]:
    """(chain, recipe steps) for one trial."""
    chain = str(trial.suggest_categorical("chain", list(options)))
    steps = [
        {"technique": technique, "config": SAMPLERS[technique](trial, ctx)}
        for technique in chain.split(CHAIN_SEPARATOR)
    ]
    return chain, steps


def space_context(roles: Mapping[str, bool], seed: int, transformer: bool = False) -> SpaceContext:
    """`roles`: role -> whether that dataset has labels; `transformer`: whether the parent
    has self-attention."""
    return SpaceContext(
        roles=frozenset(roles),
        labeled_training=bool(roles.get(ROLE_TRAINING)),
        seed=seed,
        transformer=transformer,
    )
