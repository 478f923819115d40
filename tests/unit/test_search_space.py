"""The search space (every sampled recipe is a valid recipe), the trial measures and the
content-addressed step cache."""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from compressors import registry
from compressors.base import Artifact, TorchSource
from pareto_core.tensors import Signature, TensorSpec
from service.search import space
from service.search.measures import summarize
from service.search.step_cache import StepCache, step_key
from service.search.trial import screening_budget


class FakeTrial:
    """Optuna's suggest_* API over a seeded random generator; records what it was asked."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        self.params[name] = self.rng.choice(list(choices))
        return self.params[name]

    def suggest_float(self, name: str, low: float, high: float, *, step=None, log=False):
        value = self.rng.uniform(low, high)
        if step:
            value = low + round((value - low) / step) * step
        self.params[name] = value
        return value

    def suggest_int(self, name: str, low: int, high: int) -> int:
        self.params[name] = self.rng.randint(low, high)
        return self.params[name]


ALL_ROLES = {"calibration": False, "training": True, "evaluation": True}


def test_chains_reduce_before_they_quantize():
    options = space.chains(["quantize.dynamic", "prune.structured", "low_rank.svd"], 2)
    assert options == [
        "prune.structured",
        "low_rank.svd",
        "quantize.dynamic",
        "prune.structured+quantize.dynamic",
        "low_rank.svd+quantize.dynamic",
    ]
    assert space.chains(["quantize.dynamic", "low_rank.svd"], 1) == [
        "low_rank.svd",
        "quantize.dynamic",
    ]


@pytest.mark.parametrize("seed", range(60))
def test_every_sampled_recipe_validates_and_uses_only_its_chains_parameters(seed):
    ctx = space.space_context(ALL_ROLES, seed=5)
    trial = FakeTrial(seed)
    chain, steps = space.sample_steps(trial, space.chains(space.SEARCHABLE, 2), ctx)
    assert [s["technique"] for s in steps] == chain.split("+")
    for step in steps:
        registry.parse_config(step["technique"], step["config"])  # raises when invalid
    used = {name.rsplit(".", 1)[0] for name in trial.params if name != "chain"}
    assert used <= set(chain.split("+"))


def test_what_the_datasets_allow():
    bare = space.space_context({"evaluation": False}, 0)
    assert "calibration" in space.needs("quantize.static", bare)
    assert "training" in space.needs("distill.knowledge", bare)
    assert space.needs("quantize.accuracy_aware", bare) is None
    assert space.needs("quantize.accuracy_aware", space.space_context({}, 0)) is not None
    trial = FakeTrial(0)
    assert space.SAMPLERS["prune.structured"](trial, bare)["finetune_epochs"] == 0
    labeled = space.space_context(ALL_ROLES, 0)
    assert space.SAMPLERS["prune.structured"](trial, labeled)["finetune_epochs"] > 0
    for technique in space.SEARCHABLE:
        registry.parse_config(technique, space.typical_config(technique, labeled))


def test_screening_budget_is_looser_than_the_budget():
    assert screening_budget({"max_accuracy_drop": 0.01}) == {"max_accuracy_drop": 0.04}
    assert screening_budget({"min_cosine": 0.99}) == pytest.approx({"min_cosine": 0.96})


def measurement(accuracy: float, p50: float, size: int) -> dict[str, Any]:
    return {
        "size_bytes": size,
        "compressed_size_bytes": size // 2,
        "memory_bytes": 0,
        "quality": {"accuracy": accuracy, "cosine_mean": 0.99},
        "latency": [{"batch_size": 1, "p50_ms": p50, "p99_ms": 2 * p50}],
    }


def test_summary_ratios_and_constraints():
    spec = {
        "objectives": ["latency_p99", "size"],
        "batch_size": 1,
        "constraints": {"max_latency_ms": 1.0, "max_size_bytes": 500},
    }
    parent, variant = measurement(0.97, 1.0, 1000), measurement(0.95, 0.75, 400)
    out = summarize(parent, variant, {"max_accuracy_drop": 0.01}, spec)
    assert out["objectives"] == pytest.approx({"quality": 0.95, "latency_p99": 0.75, "size": 0.4})
    assert out["metrics"]["quality_drop"] == pytest.approx(0.02)
    # the latency limit applies to p99, the first latency objective: 1.5 ms > 1.0 ms
    assert out["constraints"]["max_latency_ms"] == pytest.approx(0.5)
    assert out["constraints"]["max_size_bytes"] == pytest.approx(-0.2)
    assert out["constraints"]["quality"] == pytest.approx(1.0)  # a drop twice the limit
    assert not out["feasible"] and len(out["violations"]) == 2
    assert out["excess"] == pytest.approx(1.5)


def artifact(path: Path) -> Artifact:
    spec = TensorSpec("x", "FP32", (-1, 4))
    return Artifact(path, "onnx", Signature((spec,), (spec,)))


def test_step_cache_round_trip_and_eviction(tmp_path):
    cache = StepCache(tmp_path / "cache", max_bytes=2500)
    keys = [step_key("parent", "t", {"n": n}, "data", 0) for n in range(3)]
    assert len(set(keys)) == 3 and keys[0] == step_key("parent", "t", {"n": 0}, "data", 0)
    for n, key in enumerate(keys):
        source = tmp_path / f"out{n}.onnx"
        source.write_bytes(bytes([n]) * 1000)
        cached = cache.put(key, artifact(source), {"n": n})
        source.unlink()  # the cache keeps its own copy
        assert cached.path.read_bytes() == bytes([n]) * 1000
        os.utime(cached.path.parent, (1000 + n, 1000 + n))  # used in this order, long ago
    assert cache.get(keys[0]) is None  # the least recently used went first
    found, report = cache.get(keys[2])
    assert report == {"n": 2} and found.signature.inputs[0].shape == (-1, 4)
    assert cache.get("0" * 64) is None


def test_step_cache_keeps_a_torch_source_with_the_output(tmp_path):
    """prune.transformer's output carries its pruned folder: a cached prefix hands the next
    step the same torch source as a fresh run would."""
    folder = tmp_path / "pruned-hf"
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "1_Pooling" / "config.json").write_text("{}")
    out = tmp_path / "out.onnx"
    out.write_bytes(b"x" * 100)
    with_source = replace(artifact(out), torch_source=TorchSource(folder, "feature-extraction"))
    cache = StepCache(tmp_path / "cache")
    cached = cache.put(step_key("p", "prune.transformer", {}, "d", 0), with_source, {})
    assert cached.torch_source is not None and cached.torch_source.task == "feature-extraction"
    assert cached.torch_source.path != folder  # a copy: the work dir may be deleted
    assert (cached.torch_source.path / "1_Pooling" / "config.json").is_file()
    plain = cache.put(step_key("p", "fp16", {}, "d", 0), artifact(out), {})
    assert plain.torch_source is None


def test_first_guesses_are_points_of_the_space():
    """A fresh study is seeded with each technique at its first guess; Optuna must take
    every value as given (it would sample another one for a value outside the space)."""
    import optuna

    from service.search.study import quiet

    quiet()
    ctx = space.space_context({"calibration": False, "training": True, "evaluation": True}, 0)
    options = space.chains(space.SEARCHABLE, 2)
    guesses = space.first_guesses(options, budget=100)
    assert [g["chain"] for g in guesses[:2]] == ["quantize.dynamic", "quantize.static"]
    assert len(guesses) == len(space.SEARCHABLE)
    assert len(space.first_guesses(options, budget=4)) == 2  # at most half the budget
    study = optuna.create_study(directions=["maximize", "minimize"])
    for params in guesses:
        study.enqueue_trial(params)
    made = []

    def objective(trial):
        chain, steps = space.sample_steps(trial, options, ctx)
        made.append((chain, steps))
        return 0.0, 0.0

    study.optimize(objective, n_trials=len(guesses))
    for params, trial, (chain, steps) in zip(guesses, study.trials, made, strict=True):
        assert trial.params == params and [chain] == [params["chain"]]
        assert steps[0]["config"]  # a real config, validated below
        registry.parse_config(chain, steps[0]["config"])


def test_prefix_keys_keep_the_settings_that_decide_whether_a_step_applies():
    from service.search.objective import prefix_keys

    steps = [
        {"technique": "low_rank.svd", "config": {"energy": 0.97}},
        {"technique": "quantize.static", "config": {"method": "entropy", "per_channel": True}},
    ]
    assert prefix_keys(steps) == [
        "low_rank.svd",
        "low_rank.svd+quantize.static(method=entropy,per_channel=True)",
    ]


@pytest.mark.parametrize("seed", range(20))
def test_opt_in_transformer_techniques_sample_valid_recipes(seed):
    """quantize.weight_only and prune.transformer are explored only when named; their
    sampled configs validate, and pruning only ever comes before quantization."""
    assert not set(space.OPT_IN) & set(space.SEARCHABLE)
    assert not set(space.OPT_IN) & set(space.chains(space.SEARCHABLE, 2))
    named = ["prune.transformer", "quantize.weight_only", "quantize.dynamic"]
    options = space.chains(named, 2)
    assert "prune.transformer+quantize.weight_only" in options
    assert "quantize.weight_only+prune.transformer" not in options
    ctx = space.space_context(ALL_ROLES, seed=1)
    chain, steps = space.sample_steps(FakeTrial(seed), options, ctx)
    assert [s["technique"] for s in steps] == chain.split("+")
    for step in steps:
        registry.parse_config(step["technique"], step["config"])
    no_calibration = space.space_context({"training": False}, 0)
    config = space.SAMPLERS["quantize.weight_only"](FakeTrial(seed), no_calibration)
    assert config["algorithm"] != "gptq"
    registry.parse_config("quantize.weight_only", config)  # never hqq at 8 bits
    assert space.needs("prune.transformer", space.space_context({"evaluation": False}, 0))
    guesses = [g["chain"] for g in space.first_guesses(options, 100)]
    assert guesses == ["quantize.dynamic", "quantize.weight_only", "prune.transformer"]


TRANSFORMER_ROLES = {"calibration": False, "evaluation": False}


@pytest.mark.parametrize("seed", range(40))
def test_transformer_static_samples_transformer_settings(seed):
    """On a transformer, quantize.static samples SmoothQuant, calibration, embedding tables
    and float linear layers; every config validates and stays in transformer mode."""
    ctx = space.space_context(TRANSFORMER_ROLES, seed=3, transformer=True)
    trial = FakeTrial(seed)
    config = space.SAMPLERS["quantize.static"](trial, ctx)
    parsed = registry.parse_config("quantize.static", config)
    assert parsed.per_channel and parsed.format == "qdq" and parsed.transformer == "auto"
    if parsed.method == "entropy":  # entropy alone clips MiniLM's outlier channels
        assert parsed.smooth_quant_alpha is not None
    if parsed.smooth_quant_alpha is not None:
        assert 0.4 <= parsed.smooth_quant_alpha <= 0.8
    assert parsed.float_linear_layers in space.FLOAT_LINEAR.values()
    assert parsed.embedding_scales in ("column", "block") and parsed.small_table_bits in (4, 8)
    assert all(name.startswith("quantize.static.") for name in trial.params)
    assert "quantize.static.format" not in trial.params  # QOperator quantizes every op
    _, steps = space.sample_steps(FakeTrial(seed), ["low_rank.svd+quantize.static"], ctx)
    for step in steps:
        registry.parse_config(step["technique"], step["config"])


def test_transformer_space_covers_its_choices():
    ctx = space.space_context(TRANSFORMER_ROLES, seed=0, transformer=True)
    configs = [space.SAMPLERS["quantize.static"](FakeTrial(seed), ctx) for seed in range(200)]
    assert {c["method"] for c in configs} == {"minmax", "percentile", "entropy"}
    assert {tuple(c.get("float_linear_layers", ())) for c in configs} == set(
        space.FLOAT_LINEAR.values()
    )
    assert {c.get("embedding_block") for c in configs} == {None, 32, 64, 128}
    assert {c.get("smooth_quant_alpha") is None for c in configs} == {True, False}
    cnn = space.SAMPLERS["quantize.static"](FakeTrial(0), space.space_context(ALL_ROLES, 0))
    assert set(cnn) == {"method", "per_channel", "format"}  # a CNN's space is unchanged


def test_transformer_first_guess_is_the_static_default_and_a_point_of_the_space():
    import optuna

    from service.search.study import quiet

    quiet()
    ctx = space.space_context(TRANSFORMER_ROLES, 0, transformer=True)
    options = space.chains(["quantize.static", "quantize.dynamic"], 1)
    guesses = space.first_guesses(options, budget=10, transformer=True)
    study = optuna.create_study(directions=["maximize", "minimize"])
    for params in guesses:
        study.enqueue_trial(params)
    made = []

    def objective(trial):
        made.append(space.sample_steps(trial, options, ctx))
        return 0.0, 0.0

    study.optimize(objective, n_trials=len(guesses))
    for params, trial in zip(guesses, study.trials, strict=True):
        assert trial.params == params
    static = next(steps[0]["config"] for chain, steps in made if chain == "quantize.static")
    defaults = registry.parse_config("quantize.static", {})
    assert registry.parse_config("quantize.static", static) == defaults


def test_the_search_tells_a_transformer_from_a_cnn(minilm_model, digits_model, tmp_path):
    from service.search.run import _is_transformer

    assert _is_transformer(minilm_model.path) and not _is_transformer(digits_model.path)
    (tmp_path / "broken.onnx").write_bytes(b"not onnx")
    assert not _is_transformer(tmp_path / "broken.onnx")
