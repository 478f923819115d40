"""Distillation losses, schedules, the split and the training loop's checkpoint/resume, on
small inputs whose values are worked out by hand in the comments."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from compressors.distillation import losses
from compressors.distillation.transfer import split_indices
from compressors.training.checkpoint import Checkpoint
from compressors.training.loop import TrainPlan, fit
from compressors.training.schedules import lr_factor, polynomial_sparsity
from examples.models import minilm_student_layers

LN3 = math.log(3.0)


def test_soft_target_loss_is_the_kl_divergence_times_t_squared():
    # teacher softmax([ln3, 0]) = [0.75, 0.25]; student softmax([0, 0]) = [0.5, 0.5]
    # KL = 0.75 ln(0.75/0.5) + 0.25 ln(0.25/0.5) = 0.304099 - 0.173287 = 0.130812
    student = torch.tensor([[0.0, 0.0]])
    assert losses.soft_target_loss(student, torch.tensor([[LN3, 0.0]]), 1.0).item() == (
        pytest.approx(0.130812, abs=1e-6)
    )
    # at T=2 the teacher logits [2 ln3, 0] give the same distribution: 0.130812 * 2^2
    teacher = torch.tensor([[2 * LN3, 0.0]])
    assert losses.soft_target_loss(student, teacher, 2.0).item() == pytest.approx(
        0.523248, abs=1e-6
    )
    assert losses.soft_target_loss(teacher, teacher, 3.0).item() == pytest.approx(0.0, abs=1e-7)


def test_kd_loss_mixes_soft_targets_and_labels_by_alpha():
    student, teacher = torch.tensor([[0.0, 0.0]]), torch.tensor([[LN3, 0.0]])
    labels = torch.tensor([0])
    # CE(softmax([0, 0]), 0) = ln 2 = 0.693147; 0.5 * 0.130812 + 0.5 * 0.693147 = 0.411980
    assert losses.kd_loss(student, teacher, labels, 1.0, 0.5).item() == pytest.approx(
        0.41198, abs=1e-5
    )
    assert losses.kd_loss(student, teacher, labels, 1.0, 0.0).item() == pytest.approx(
        0.693147, abs=1e-6
    )
    # without labels only the soft part is left, whatever alpha says
    assert losses.kd_loss(student, teacher, None, 1.0, 0.5).item() == pytest.approx(
        0.130812, abs=1e-6
    )


def test_embedding_losses():
    s, t = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    # cos = 1 / sqrt(2) = 0.707107 -> 1 - cos = 0.292893; MSE = (0^2 + 1^2) / 2 = 0.5
    assert losses.embedding_loss(s, t, "cosine").item() == pytest.approx(0.292893, abs=1e-6)
    assert losses.embedding_loss(s, t, "mse").item() == pytest.approx(0.5)


def test_mixup_blends_each_sample_with_its_partner():
    x = torch.tensor([[0.0], [4.0]])
    (mixed,) = losses.mixup([x], 0.25, torch.tensor([1, 0]))
    # 0.25 * 0 + 0.75 * 4 = 3; 0.25 * 4 + 0.75 * 0 = 1
    assert mixed.tolist() == [[3.0], [1.0]]


def test_learning_rate_schedules():
    assert [lr_factor(s, 10, "constant") for s in (0, 9)] == [1.0, 1.0]
    assert lr_factor(5, 10, "linear") == pytest.approx(0.5)
    assert lr_factor(0, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(5, 10, "cosine") == pytest.approx(0.5)  # (1 + cos(pi/2)) / 2
    assert lr_factor(10, 10, "cosine") == pytest.approx(0.0)
    # 2 warm-up steps: 1/2, 2/2, then cosine over the 8 steps left: step 6 is half-way
    assert [lr_factor(s, 10, "cosine", warmup=2) for s in (0, 1)] == [0.5, 1.0]
    assert lr_factor(6, 10, "cosine", warmup=2) == pytest.approx(0.5)


def test_polynomial_sparsity_follows_zhu_and_gupta():
    # s_t = 0.8 + (0 - 0.8)(1 - t/10)^3
    assert polynomial_sparsity(0, 0, 10, 0.0, 0.8) == 0.0
    assert polynomial_sparsity(2, 0, 10, 0.0, 0.8) == pytest.approx(0.8 - 0.8 * 0.8**3)  # 0.3904
    assert polynomial_sparsity(5, 0, 10, 0.0, 0.8) == pytest.approx(0.7)  # 0.8 - 0.8 / 8
    assert polynomial_sparsity(10, 0, 10, 0.0, 0.8) == 0.8
    assert polynomial_sparsity(50, 0, 10, 0.0, 0.8) == 0.8
    assert polynomial_sparsity(6, 4, 8, 0.2, 0.6, power=1) == pytest.approx(0.4)


def test_split_is_seeded_disjoint_and_capped():
    train, held = split_indices(100, 0.2, seed=3)
    assert (len(train), len(held)) == (80, 20)
    assert not set(train) & set(held) and set(train) | set(held) == set(range(100))
    assert np.array_equal(split_indices(100, 0.2, seed=3)[0], train)
    assert len(split_indices(100, 0.2, seed=3, limit=10)[0]) == 10
    assert len(split_indices(100, 0.0, seed=3)[1]) == 0


def test_student_layers_keep_every_kth_and_the_last():
    assert minilm_student_layers(3) == [1, 3, 5]
    assert minilm_student_layers(2) == [2, 5]
    assert minilm_student_layers(6) == [0, 1, 2, 3, 4, 5]


def _regression(checkpoint: Checkpoint | None, killed_after: int = 0) -> tuple[Any, dict]:
    """4 epochs of 5 steps of linear regression; `killed_after` steps > 0 stops it there."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    target = torch.from_numpy(x @ np.array([1.0, -2.0, 0.5], np.float32))[:, None]
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    steps = iter(range(10**6))

    def loss_fn(m: Any, batch: list[Any], labels: Any, idx: Any) -> Any:
        return torch.nn.functional.mse_loss(m(batch[0]), target[idx])

    def killed() -> bool:
        return bool(killed_after) and next(steps) >= killed_after

    plan = TrainPlan(epochs=4, lr=0.05, batch_size=8, schedule="cosine")
    report = fit(model, [x], None, plan, loss_fn, checkpoint=checkpoint, is_cancelled=killed)
    return model, report


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path):
    from pareto_core.errors import Cancelled

    straight, report = _regression(None)
    assert report["epochs_run"] == 4 and report["resumed_from_epoch"] == 0
    checkpoint = Checkpoint(tmp_path, "fingerprint-a")
    with pytest.raises(Cancelled):  # 2 epochs of 5 steps, then "killed" in the third
        _regression(checkpoint, killed_after=12)
    assert checkpoint.load()["epoch"] == 2
    resumed, report = _regression(checkpoint)
    assert report["resumed_from_epoch"] == 2 and report["epochs_run"] == 4
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert len(report["loss_per_epoch"]) == 4


def test_a_checkpoint_of_another_step_is_ignored(tmp_path):
    Checkpoint(tmp_path, "a").save({"epoch": 3})
    assert Checkpoint(tmp_path, "b").load() is None
    assert Checkpoint(tmp_path, "a").load()["epoch"] == 3
    assert Checkpoint(None, "a").load() is None


def test_progress_carries_epoch_step_loss_and_the_heldout_score():
    x = np.arange(8, dtype=np.float32)[:, None]
    model = torch.nn.Linear(1, 1)
    events: list[tuple[float, str, dict]] = []

    def loss_fn(m: Any, batch: list[Any], labels: Any, idx: Any) -> Any:
        return m(batch[0]).pow(2).mean()

    plan = TrainPlan(epochs=2, lr=0.01, batch_size=4, patience=5)
    report = fit(
        model,
        [x],
        None,
        plan,
        loss_fn,
        score_fn=lambda m: 0.5,
        progress=lambda *e: events.append(e),
    )
    ends = [e for e in events if e[1].endswith("done")]
    assert [e[2]["epoch"] for e in ends] == [1.0, 2.0] and all(e[2]["heldout"] == 0.5 for e in ends)
    assert {"epoch", "step", "loss"} <= set(events[0][2]) and events[-1][0] == 1.0
    assert report["heldout_per_epoch"] == [0.5, 0.5] and report["best_epoch"] == 1


def test_early_stopping_keeps_the_best_epoch():
    x = np.ones((4, 1), dtype=np.float32)
    model = torch.nn.Linear(1, 1)
    scores = iter([0.9, 0.8, 0.7, 0.6])
    snapshots = []

    def score(m: Any) -> float:
        snapshots.append(m.weight.detach().clone())
        return next(scores)

    def loss_fn(m: Any, batch: list[Any], labels: Any, idx: Any) -> Any:
        return (m(batch[0]) - 5.0).pow(2).mean()

    plan = TrainPlan(epochs=4, lr=0.1, batch_size=4, patience=1)
    report = fit(model, [x], None, plan, loss_fn, score_fn=score)
    assert (report["epochs_run"], report["early_stopped"], report["best_epoch"]) == (2, True, 1)
    torch.testing.assert_close(model.weight, snapshots[0])  # epoch 1's weights are back
