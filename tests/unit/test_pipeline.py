"""compressors.pipeline: steps in order, one work dir each, format checks, cancellation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import tests.helpers.job_techniques  # noqa: F401  (registers the test.* techniques)
from compressors.base import Artifact, StepContext
from compressors.pipeline import Step, parse_steps, run_recipe
from pareto_core.errors import Cancelled, FailedPrecondition, InvalidArgument
from pareto_core.tensors import Signature, TensorSpec

SIGNATURE = Signature((TensorSpec("X", "FP32", (-1, 3)),), (TensorSpec("Y", "FP32", (-1, 2)),))


@pytest.fixture
def parent(tmp_path: Path, onnx_model_factory) -> Artifact:
    path = tmp_path / "parent.onnx"
    onnx.save(onnx_model_factory(), str(path))
    return Artifact(path, "onnx", SIGNATURE)


def weights(path: Path) -> np.ndarray:
    model = onnx.load(str(path))
    return next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name == "W")


def factory(root: Path, parent: Artifact, cancelled=lambda: False, seen: list | None = None):
    def make(index: int, step: Step) -> StepContext:
        if seen is not None:
            seen.append((index, step.name))
        return StepContext(root / f"{index}-{step.name}", parent, is_cancelled=cancelled)

    return make


def test_steps_run_in_order_each_in_its_own_dir(tmp_path, parent):
    before = parent.path.read_bytes()
    steps = parse_steps(
        [
            {"technique": "test.scale", "config": {"factor": 2.0}},
            {"technique": "test.scale", "config": {"factor": 3.0}},
        ]
    )
    seen: list = []
    artifact, reports = run_recipe(parent, steps, factory(tmp_path / "work", parent, seen=seen))

    assert seen == [(0, "test.scale"), (1, "test.scale")]
    assert artifact.path.parent == tmp_path / "work" / "1-test.scale"
    assert (tmp_path / "work" / "0-test.scale" / "scaled.onnx").is_file()
    np.testing.assert_allclose(weights(artifact.path), weights(parent.path) * 6.0)
    assert parent.path.read_bytes() == before  # the input is never modified
    assert [(r["step"], r["technique"], r["report"]) for r in reports] == [
        (1, "test.scale", {"factor": 2.0}),
        (2, "test.scale", {"factor": 3.0}),
    ]
    assert reports[0]["config"] == {"type": "test.scale", "version": 1, "data": {"factor": 2.0}}


def test_a_step_that_cannot_take_the_format_is_a_failed_precondition(tmp_path, parent):
    steps = parse_steps([{"technique": "test.scale"}, {"technique": "test.torch_only"}])
    with pytest.raises(FailedPrecondition, match=r"step 2 \(test.torch_only\) takes torch_export"):
        run_recipe(parent, steps, factory(tmp_path, parent))


def test_cancellation_is_checked_between_steps(tmp_path, parent):
    calls: list = []
    steps = parse_steps([{"technique": "test.scale"}, {"technique": "test.scale"}])
    with pytest.raises(Cancelled, match="before step 2"):
        run_recipe(parent, steps, factory(tmp_path, parent, lambda: len(calls) > 1, calls))
    assert not (tmp_path / "1-test.scale").exists()


def test_bad_config_names_the_field(tmp_path):
    with pytest.raises(InvalidArgument, match=r"recipes\[0\]\.steps\[1\]\.config\.factor"):
        parse_steps(
            [{"technique": "test.scale"}, {"technique": "test.scale", "config": {"factor": 0}}],
            where="recipes[0].steps",
        )


def test_unknown_technique_lists_the_known_ones():
    with pytest.raises(InvalidArgument, match=r"unknown technique 'nope'.*test\.scale"):
        parse_steps([{"technique": "nope"}])
