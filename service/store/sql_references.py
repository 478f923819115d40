"""What records refer to, checked inside the writing transaction.

Every write transaction holds the database's one write lock (SQLite's BEGIN IMMEDIATE,
PostgreSQL's advisory lock), so a check made in the same transaction as the write cannot
be overtaken: a model is never deleted while a deployment, variant or active job refers to
it, and a deployment or job is never stored for a model deleted a moment before.
"""

from __future__ import annotations

from pareto_core.errors import FailedPrecondition, NotFound
from service.store.deployment_records import DeploymentRecord, deployments_using, spec_from_data
from service.store.records import JOB_QUEUED, JOB_RUNNING
from service.store.sql_codec import from_json
from service.store.sql_types import Connection

LISTED = 5  # dependents named in an error message


def deployments_on(c: Connection, model: str, version: str = "") -> list[str]:
    """Deployments with a target on `model` (its `version` only, when given)."""
    rows = c.execute("SELECT name, spec FROM deployments WHERE model = ?", (model,)).fetchall()
    records = [
        DeploymentRecord(row["name"], model, **spec_from_data(from_json(row["spec"])))
        for row in rows
    ]
    return deployments_using(records, model, version)


def refuse_model_delete(c: Connection, name: str, version: int) -> None:
    """FailedPrecondition while a deployment targets the model (version 0: any version),
    a variant has it as parent or a job queued or running uses it."""
    what = f"model {name!r}{f' version {version}' if version else ''}"
    deployed = deployments_on(c, name, str(version or ""))
    if deployed:
        raise FailedPrecondition(
            f"{what} is a target of deployment(s) {_some(deployed)}; delete them first"
        )
    variants = [
        row["id"]
        for row in c.execute(
            "SELECT id, parent_version FROM variants WHERE parent_model = ? ORDER BY seq",
            (name,),
        ).fetchall()
        if version in (0, row["parent_version"])
    ]
    if variants:
        raise FailedPrecondition(
            f"{what} has {len(variants)} variant(s) ({_some(variants)}); delete them first "
            "(DeleteVariant / `pareto variants`)"
        )
    jobs = [
        row["id"]
        for row in c.execute(
            "SELECT id, model_version FROM jobs WHERE model = ? AND state IN (?, ?) ORDER BY seq",
            (name, JOB_QUEUED, JOB_RUNNING),
        ).fetchall()
        if version in (0, row["model_version"])
    ]
    if jobs:
        raise FailedPrecondition(
            f"{what} has {len(jobs)} job(s) queued or running ({_some(jobs)}); cancel them "
            "or wait for them to end"
        )


def refuse_variant_delete(c: Connection, variant_id: str, model: str) -> None:
    deployed = deployments_on(c, model, variant_id)
    if deployed:
        raise FailedPrecondition(
            f"variant {variant_id!r} is a target of deployment(s) {', '.join(deployed)}; "
            "remove it from them first (DeleteDeployment, or a new deployment without it)"
        )


def require_model(c: Connection, name: str, version: int, field: str = "model") -> None:
    """NotFound unless model `name` (version `version`, 0 = any) is stored."""
    if version:
        sql, args = "SELECT 1 FROM models WHERE name = ? AND version = ?", (name, version)
    else:
        sql, args = "SELECT 1 FROM models WHERE name = ?", (name,)
    if c.execute(sql, args).fetchone() is None:
        shown = f"{name!r}{f' version {version}' if version else ''}"
        raise NotFound(f"{field}: model {shown} not found (deleted meanwhile?)")


def require_targets(c: Connection, record: DeploymentRecord) -> None:
    """NotFound unless the model and every target's version or variant are stored."""
    require_model(c, record.model, 0)
    for i, target in enumerate(record.targets):
        version = target.model_version
        where = f"targets[{i}] ({target.name!r})"
        if version.isdigit():
            require_model(c, record.model, int(version), where)
        elif version:
            found = c.execute(
                "SELECT 1 FROM variants WHERE id = ? AND parent_model = ?",
                (version, record.model),
            ).fetchone()
            if found is None:
                raise NotFound(f"{where}: variant {version!r} of {record.model!r} not found")


def _some(ids: list[str]) -> str:
    more = f" and {len(ids) - LISTED} more" if len(ids) > LISTED else ""
    return ", ".join(ids[:LISTED]) + more
