"""A search spec's own fields: defaults, and a clear INVALID_ARGUMENT naming each bad one."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from pareto_core.errors import InvalidArgument
from service.search import spec as checks
from service.search.study import make_sampler, storage_url

ROOT = Path(__file__).resolve().parents[2]


def test_defaults():
    assert checks.check_objectives([]) == ["latency_p50", "size"]
    assert checks.check_budget(0, 0) == (checks.DEFAULT_TRIALS, 0.0)
    assert checks.check_budget(0, 60) == (checks.MAX_TRIALS, 60.0)  # until the time is up
    assert checks.check_options({}) == {
        "sampler": "tpe",
        "seed": 0,
        "max_steps": 2,
        "parallelism": 1,
    }
    assert checks.parallelism({"n_trials": 3}) == 1  # a spec stored before the field
    assert checks.check_batch_size(0, [8, 64]) == 8
    assert checks.check_constraints({"max_size_bytes": 2e4}) == {"max_size_bytes": 20000}


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: checks.check_objectives(["latency_p50", "speed"]), "search.objectives[1]"),
        (lambda: checks.check_objectives(["size", "size"]), "search.objectives[1]"),
        (lambda: checks.check_constraints({"max_quality_drop": -0.01}), "max_quality_drop"),
        (lambda: checks.check_constraints({"max_quality_drop": 1.5}), "max_quality_drop"),
        (lambda: checks.check_constraints({"max_latency_ms": 0}), "max_latency_ms"),
        (lambda: checks.check_constraints({"max_size_bytes": -1}), "max_size_bytes"),
        (lambda: checks.check_constraints({"max_memory_bytes": 1.5}), "max_memory_bytes"),
        (lambda: checks.check_constraints({"max_latency_ms": math.nan}), "max_latency_ms"),
        (lambda: checks.check_constraints({"min_speed": 1}), "search.constraints"),
        (lambda: checks.check_budget(-1, 0), "search.n_trials"),
        (lambda: checks.check_budget(checks.MAX_TRIALS + 1, 0), "search.n_trials"),
        (lambda: checks.check_budget(5, -3), "search.timeout_s"),
        (lambda: checks.check_budget(5, math.inf), "search.timeout_s"),
        (lambda: checks.check_options({"sampler": "grid"}), "search.sampler"),
        (lambda: checks.check_options({"max_steps": 3}), "search.max_steps"),
        (lambda: checks.check_options({"seed": -1}), "search.seed"),
        (lambda: checks.check_options({"parallelism": 65}), "search.parallelism"),
        (lambda: checks.check_options({"parallelism": -2}), "search.parallelism"),
        (lambda: checks.check_options({"parallelism": 1.5}), "search.parallelism"),
        (lambda: checks.check_batch_size(5000, [1]), "search.batch_size"),
        (lambda: checks.check_fields({"objective": []}), "search: unknown fields"),
    ],
)
def test_bad_fields_are_named(call, field):
    with pytest.raises(InvalidArgument) as caught:
        call()
    assert field in str(caught.value)


def test_latency_limit_follows_the_first_latency_objective():
    assert checks.latency_percentile({"objectives": ["size", "latency_p99"]}) == "p99"
    assert checks.latency_percentile({"objectives": ["size"]}) == "p50"
    assert checks.uses_memory({"objectives": ["size"], "constraints": {"max_memory_bytes": 9}})
    assert not checks.uses_memory({"objectives": ["size"], "constraints": {}})


def test_optuna_storage_and_samplers(tmp_path):
    assert storage_url(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'metadata.db'}"
    url = storage_url(tmp_path, "postgresql://u:p@db:5432/pareto")
    assert url == "postgresql+psycopg://u:p@db:5432/pareto"
    spec = {"seed": 4, "n_trials": 30}
    names = {
        s: type(make_sampler({**spec, "sampler": s}, existing=2)).__name__
        for s in ("tpe", "nsga2", "random")
    }
    assert names == {"tpe": "TPESampler", "nsga2": "NSGAIISampler", "random": "RandomSampler"}


def test_the_server_and_the_cli_do_not_import_optuna_or_matplotlib():
    """Only job workers import Optuna, and only a plot imports matplotlib."""
    code = (
        "import sys, service.server, service.search.create, pareto_cli.main\n"
        "heavy = [m for m in ('optuna', 'matplotlib', 'sqlalchemy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
