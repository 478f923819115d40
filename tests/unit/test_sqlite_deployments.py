"""Deployments in SQLite and PostgreSQL: round trip, revision-checked updates, delete."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pareto_core.errors import AlreadyExists, FailedPrecondition, NotFound
from service.store.deployment_records import (
    CANARY_RUNNING,
    ROLE_SHADOW,
    CanaryPlan,
    CanaryStatus,
    DeploymentRecord,
    TargetSpec,
)
from service.store.sql_codec import now
from tests.helpers.store_backends import (
    BACKENDS,
    StoreBackend,
    add_deployment,
    ensure_model,
    store_backend,
)

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


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreBackend]:
    yield from store_backend(request, tmp_path)


def test_round_trip_update_and_delete(backend):
    repo = backend.open()
    stored = add_deployment(repo, RECORD)
    assert stored.revision == 1 and stored.created_at is not None
    assert repo.get_deployment("minilm") == stored
    with pytest.raises(AlreadyExists):
        add_deployment(repo, RECORD)

    changed = repo.update_deployment(stored.with_weights({"1": 100.0, "var-0a0b0c": 0.0}))
    assert changed.revision == 2 and changed.targets[0].weight == 100.0
    repo.close()
    repo = backend.open()  # survives reopening
    assert repo.get_deployment("minilm") == changed

    with pytest.raises(FailedPrecondition, match="changed meanwhile"):
        repo.update_deployment(replace(stored, model="other"))  # stale revision 1
    assert repo.get_deployment("minilm") == changed
    assert [d.name for d in repo.list_deployments()] == ["minilm"]
    assert repo.delete_deployment("minilm") == changed
    with pytest.raises(NotFound):
        repo.get_deployment("minilm")


def test_a_deployment_of_a_missing_model_or_variant_is_not_stored(backend):
    repo = backend.open()
    with pytest.raises(NotFound, match="model 'minilm' not found"):
        repo.add_deployment(RECORD)
    ensure_model(repo, "minilm")
    with pytest.raises(NotFound, match="variant 'var-0a0b0c'"):
        repo.add_deployment(RECORD)
    assert repo.list_deployments() == []


def test_a_deployed_model_or_variant_cannot_be_deleted(backend):
    repo = backend.open()
    add_deployment(repo, RECORD)
    with pytest.raises(FailedPrecondition, match="deployment"):
        repo.delete_model("minilm")
    with pytest.raises(FailedPrecondition, match="deployment"):
        repo.delete_variant("var-0a0b0c")
    repo.delete_deployment("minilm")
    repo.delete_variant("var-0a0b0c")
    assert [r.name for r in repo.delete_model("minilm")] == ["minilm"]
