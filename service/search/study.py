"""The Optuna study of a search: where it is stored, how it samples, what its trials say.

The study lives in the gateway's own database: Optuna's tables (`studies`, `trials`, ...)
sit beside ours in `metadata.db` (SQLite, WAL; Optuna's SQLAlchemy connections wait up to
30 s for a lock), or in the PostgreSQL database of `PARETO_DATABASE_URL`. A search job
opens its study by name (`pareto:<model>:<first job id>`), so a worker that restarts, or a
later job resuming the search, continues the same trials.

Only job workers import this module (Optuna is not on the server's import path).
"""

from __future__ import annotations

import fcntl
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

STATES = {
    TrialState.RUNNING: "RUNNING",
    TrialState.COMPLETE: "COMPLETE",
    TrialState.PRUNED: "PRUNED",
    TrialState.FAIL: "FAILED",
}
STARTED = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def database_url(settings: Any) -> str:
    """PARETO_DATABASE_URL ("" = the embedded SQLite file), a secret or a plain string."""
    value = getattr(settings, "database_url", "") or ""
    reveal = getattr(value, "get_secret_value", None)
    return str(reveal() if reveal is not None else value)


def storage_url(data_dir: Path, database_url: str = "") -> str:
    """Optuna's SQLAlchemy URL for the gateway's metadata database."""
    if database_url.startswith(POSTGRES_SCHEMES):
        return "postgresql+psycopg://" + database_url.split("://", 1)[1]
    return f"sqlite:///{Path(data_dir).resolve() / 'metadata.db'}"


@contextmanager
def _creation_lock(data_dir: Path) -> Iterator[None]:
    """Two workers creating Optuna's tables in one SQLite file at once would race."""
    path = Path(data_dir) / "search-cache" / ".optuna.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def open_storage(data_dir: Path, database_url: str = "") -> optuna.storages.RDBStorage:
    quiet()
    url = storage_url(data_dir, database_url)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 30}}
    with _creation_lock(data_dir):
        return optuna.storages.RDBStorage(url, **kwargs)


def quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def make_sampler(spec: dict[str, Any], existing: int) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded with the seed plus the trials already in the study, so a
    resumed search does not draw the first trials' parameters again."""
    quiet()
    seed = int(spec["seed"]) + existing
    n_trials = int(spec["n_trials"])
    if spec["sampler"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec["sampler"] == "nsga2":
        population = max(4, min(20, n_trials // 3))
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    return optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=max(3, min(10, n_trials // 4)),
        multivariate=True,
        group=True,
    )


def directions(spec: dict[str, Any]) -> list[str]:
    """Quality is maximized, every objective of the spec minimized."""
    return ["maximize"] + ["minimize"] * len(spec["objectives"])


def open_study(
    storage: optuna.storages.RDBStorage, spec: dict[str, Any], sampler: Any
) -> optuna.Study:
    return optuna.create_study(
        study_name=spec["study"],
        storage=storage,
        directions=directions(spec),
        sampler=sampler,
        load_if_exists=True,
    )


def count_trials(storage: optuna.storages.RDBStorage, name: str) -> int:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return 0
    return storage.get_n_trials(study_id)


def fail_stale_trials(storage: optuna.storages.RDBStorage, study: optuna.Study) -> int:
    """Trials left RUNNING by a worker that was killed: only one job runs a study at a time
    (CreateJob refuses a resume while another job of the study is queued or running)."""
    stale = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in stale:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_user_attr(trial_id, "interrupted", True)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
    return len(stale)


def trial_record(trial: FrozenTrial) -> dict[str, Any]:
    """A trial as the search result lists it (see result.py); user attrs are the outcome."""
    attrs = dict(trial.user_attrs)
    steps = attrs.get("steps", [])
    record: dict[str, Any] = {
        **attrs,
        "number": trial.number,
        "state": STATES.get(trial.state, "FAILED"),
        "recipe": {"name": attrs.get("name", f"trial-{trial.number}"), "steps": steps},
    }
    if "seconds" not in attrs and trial.duration is not None:
        record["seconds"] = round(trial.duration.total_seconds(), 3)
    if attrs.get("interrupted") and trial.state == TrialState.FAIL:
        record["message"] = "interrupted (cancelled, or the worker stopped); not counted"
    return record
