"""Where a search lives: its spec and result beside the job (both backends), and its Optuna
study in the same database (SQLite in WAL mode beside our own connection; PostgreSQL)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.search.study import open_storage, quiet, storage_url
from service.store.records import JobRecord
from tests.helpers.store_backends import create_job


def job(job_id: str) -> JobRecord:
    return JobRecord(job_id, "m", 1, (), {}, {}, {})


@pytest.fixture(params=["sqlite", "postgres"])
def repo(request, tmp_path: Path) -> Iterator:
    if request.param == "sqlite":
        from service.store.sqlite_repository import SqliteRepository

        store = SqliteRepository(tmp_path / "metadata.db")
    else:
        from service.store.postgres_repository import PostgresRepository

        store = PostgresRepository(request.getfixturevalue("postgres_url"))
    yield store
    store.close()


def test_spec_and_result_round_trip_and_the_latest_search_of_a_model(repo):
    assert repo.get_search("job-000001") is None and repo.latest_search("m") is None
    for job_id in ("job-000001", "job-000002"):
        repo.add_search(job_id, {"study": f"pareto:m:{job_id}", "n_trials": 3})
        create_job(repo, job(job_id))
    create_job(repo, job("job-000003"))  # a recipe job: not a search
    repo.put_search_result("job-000001", {"frontier": [2, 0], "message": "x", "q": float("nan")})
    first = repo.get_search("job-000001")
    assert first.spec == {"study": "pareto:m:job-000001", "n_trials": 3}
    assert first.result["frontier"] == [2, 0] and first.updated_at is not None
    assert repo.latest_search("m").job_id == "job-000002"
    assert repo.latest_search("other") is None
    repo.add_search("job-000004", {"study": "s"})
    repo.remove_search("job-000004")
    assert repo.get_search("job-000004") is None


def run_two_trials(url: str, data_dir: Path) -> int:
    import optuna

    quiet()
    storage = open_storage(data_dir, url if url.startswith("postgres") else "")
    study = optuna.create_study(
        study_name="pareto:m:job-000001",
        storage=storage,
        directions=["maximize", "minimize"],
        load_if_exists=True,
    )

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", 0, 1)
        trial.set_user_attr("job_id", "job-000001")
        trial.set_constraint("size", x - 0.5)
        return x, x

    study.optimize(objective, n_trials=2)
    return len(study.trials)


def test_optuna_shares_the_sqlite_database_in_wal_mode(tmp_path):
    from service.store.sqlite_repository import SqliteRepository

    repo = SqliteRepository(tmp_path / "metadata.db")
    try:
        repo.add_search("job-000001", {"study": "pareto:m:job-000001"})
        assert run_two_trials("", tmp_path) == 2
        assert run_two_trials("", tmp_path) == 4  # the same study, continued
        repo.put_search_result("job-000001", {"trials": [1, 2, 3, 4]})  # ours still writes
        assert repo.get_search("job-000001").result == {"trials": [1, 2, 3, 4]}
    finally:
        repo.close()
    db = sqlite3.connect(tmp_path / "metadata.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"searches", "jobs", "studies", "trials", "trial_user_attributes"} <= tables
    assert storage_url(tmp_path).endswith("/metadata.db")


def test_optuna_study_in_postgres(postgres_url, tmp_path):
    from service.store.postgres_repository import PostgresRepository

    PostgresRepository(postgres_url).close()  # our schema first, as the server does
    assert run_two_trials(postgres_url, tmp_path) == 2
    assert run_two_trials(postgres_url, tmp_path) == 4
