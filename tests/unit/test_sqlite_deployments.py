"""Deployments in SQLite: round trip, revision-checked updates, delete."""

from __future__ import annotations

from dataclasses import replace

import pytest

from service.deployments.records import (
    CANARY_RUNNING,
    ROLE_SHADOW,
    CanaryPlan,
    CanaryStatus,
    DeploymentRecord,
    TargetSpec,
)
from service.errors import AlreadyExists, FailedPrecondition, NotFound
from service.store.sqlite_codec import now
from service.store.sqlite_repository import SqliteRepository

RECORD = DeploymentRecord(
    name="minilm",
    model="minilm",
    targets=(
        TargetSpec("1", "1", weight=50.0),
        TargetSpec("var-0a0b0c", "var-0a0b0c", "onnxruntime_cpu", {"intra_op_threads": 1}, 50.0),
        TargetSpec("1-shadow", "1", role=ROLE_SHADOW, sample_rate=0.25),
    ),
    canary=CanaryPlan(
        "var-0a0b0c", (50.0, 100.0), min_requests=10, min_agreement=0.9, agreement_measure="cosine"
    ),
    canary_status=CanaryStatus(CANARY_RUNNING, 1, "", now()),
)


def test_round_trip_update_and_delete(tmp_path):
    repo = SqliteRepository(tmp_path / "m.db")
    stored = repo.add_deployment(RECORD)
    assert stored.revision == 1 and stored.created_at is not None
    assert repo.get_deployment("minilm") == stored
    with pytest.raises(AlreadyExists):
        repo.add_deployment(RECORD)

    changed = repo.update_deployment(stored.with_weights({"1": 100.0, "var-0a0b0c": 0.0}))
    assert changed.revision == 2 and changed.targets[0].weight == 100.0
    repo.close()
    repo = SqliteRepository(tmp_path / "m.db")  # survives reopening
    assert repo.get_deployment("minilm") == changed

    with pytest.raises(FailedPrecondition, match="changed meanwhile"):
        repo.update_deployment(replace(stored, model="other"))  # stale revision 1
    assert repo.get_deployment("minilm") == changed
    assert [d.name for d in repo.list_deployments()] == ["minilm"]
    assert repo.delete_deployment("minilm") == changed
    with pytest.raises(NotFound):
        repo.get_deployment("minilm")
