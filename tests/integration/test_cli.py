"""The `pareto` command against a real gateway, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np


def pareto(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pareto_cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | (env or {}),
    )


def test_upload_models_infer(address, digits_model, tmp_path):
    server = ("--server", address)
    uploaded = pareto(
        "upload",
        str(digits_model.path),
        "--name",
        "digits",
        "--label",
        "team=search",
        "--json",
        *server,
    )
    assert uploaded.returncode == 0, uploaded.stderr
    assert json.loads(uploaded.stdout)["labels"] == {"team": "search"}

    listed = pareto("models", "--json", *server)
    assert [(m["name"], m["version"]) for m in json.loads(listed.stdout)] == [("digits", "1")]
    table = pareto("models", *server)
    assert "digits" in table.stdout and "pixels" in table.stdout and "FP32" in table.stdout

    pixels = digits_model.X_test[:2].astype(np.float32)
    np.save(tmp_path / "pixels.npy", pixels)
    result = pareto(
        "infer",
        "digits",
        "--input",
        f"pixels={tmp_path / 'pixels.npy'}",
        "--json",
        "--output-dir",
        str(tmp_path / "out"),
        *server,
    )
    assert result.returncode == 0, result.stderr
    logits = np.array(json.loads(result.stdout)["logits"])
    assert logits.shape == (2, 10)
    assert np.allclose(np.load(tmp_path / "out" / "logits.npy"), logits)


def test_errors_are_one_readable_line(address, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), np.float32))
    result = pareto(
        "infer", "missing", "--input", f"pixels={tmp_path / 'x.npy'}", "--server", address
    )
    assert result.returncode == 1
    assert "NOT_FOUND" in result.stderr and "missing" in result.stderr
    listed = pareto("models", "--server", address, env={"PARETO_SERVER": "ignored"})
    assert listed.returncode == 0


def test_bad_setting_fails_at_start_naming_it(tmp_path):
    result = pareto("serve", "--data-dir", str(tmp_path), env={"PARETO_GRPC_WORKERS": "zero"})
    assert result.returncode != 0
    assert "PARETO_GRPC_WORKERS" in result.stderr


def test_config_shows_and_changes_how_a_model_is_served(address, digits_model, triton):
    server = ("--server", address)
    assert pareto("upload", str(digits_model.path), "--name", "digits", *server).returncode == 0
    shown = pareto("config", "digits", *server)
    assert shown.returncode == 0, shown.stderr
    assert "batching auto, max batch 64" in shown.stdout
    changed = pareto(
        "config", "digits", "--max-batch-size", "16", "--preferred", "4,8", "--instances", "3",
        "--json", *server,
    )  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    batching = json.loads(changed.stdout)["batching"]
    assert (batching["max_batch_size"], batching["preferred_batch_sizes"]) == (16, [4, 8])
    assert batching["instances"] == 3
    assert triton.get_model_config("digits").config.max_batch_size == 16
    refused = pareto("config", "digits", "--pad", "nope", *server)
    assert refused.returncode == 1 and "INVALID_ARGUMENT" in refused.stderr
