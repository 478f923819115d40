"""`VariantRepository` in SQL shared by both backends: a mixin (table `variants`)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

from pareto_core.errors import AlreadyExists, NotFound
from pareto_core.tensors import Signature
from service.store.interfaces import VariantRepository
from service.store.records import VariantRecord
from service.store.sql_codec import (
    from_json,
    now,
    recipe_from_data,
    recipe_to_data,
    specs_from_json,
    specs_to_json,
    time_from_text,
    time_to_text,
    to_json,
)
from service.store.sql_references import refuse_variant_delete
from service.store.sql_types import Connection

_COLUMNS = (
    "id, parent_model, parent_version, job_id, recipe, format, sha256, size_bytes, inputs, "
    "outputs, metrics, parent_metrics, budget_ok, budget_reason, report, created_at"
)


def _row_to_variant(row: Any) -> VariantRecord:
    return VariantRecord(
        id=row["id"],
        parent_model=row["parent_model"],
        parent_version=row["parent_version"],
        job_id=row["job_id"],
        recipe=recipe_from_data(from_json(row["recipe"])),
        format=row["format"],
        sha256=row["sha256"],
        size_bytes=row["size_bytes"],
        signature=Signature(specs_from_json(row["inputs"]), specs_from_json(row["outputs"])),
        metrics=from_json(row["metrics"]),
        parent_metrics=from_json(row["parent_metrics"]),
        budget_ok=bool(row["budget_ok"]),
        budget_reason=row["budget_reason"],
        report=from_json(row["report"]),
        created_at=time_from_text(row["created_at"]),
    )


def _variant_to_row(v: VariantRecord) -> tuple[Any, ...]:
    return (
        v.id,
        v.parent_model,
        v.parent_version,
        v.job_id,
        to_json(recipe_to_data(v.recipe)),
        v.format,
        v.sha256,
        v.size_bytes,
        specs_to_json(v.signature.inputs),
        specs_to_json(v.signature.outputs),
        to_json(v.metrics),
        to_json(v.parent_metrics),
        int(v.budget_ok),
        v.budget_reason,
        to_json(v.report),
        time_to_text(v.created_at),
    )


class SqlVariants(VariantRepository):
    """Needs `_tx()` (a write transaction) and `_query(sql, params)` from the backend."""

    _tx: Callable[..., AbstractContextManager[Connection]]
    _query: Callable[..., list[Any]]

    def add_variant(self, record: VariantRecord) -> VariantRecord:
        stored = replace(record, created_at=now())
        placeholders = ", ".join("?" * len(_COLUMNS.split(",")))
        with self._tx() as c:
            if c.execute("SELECT 1 FROM variants WHERE id = ?", (record.id,)).fetchone():
                raise AlreadyExists(f"variant {record.id!r} already exists")
            c.execute(
                f"INSERT INTO variants ({_COLUMNS}) VALUES ({placeholders})",
                _variant_to_row(stored),
            )
        return stored

    def get_variant(self, variant_id: str) -> VariantRecord:
        rows = self._query(f"SELECT {_COLUMNS} FROM variants WHERE id = ?", (variant_id,))
        if not rows:
            raise NotFound(f"variant {variant_id!r} not found")
        return _row_to_variant(rows[0])

    def list_variants(self, model: str = "") -> list[VariantRecord]:
        if model:
            sql = f"SELECT {_COLUMNS} FROM variants WHERE parent_model = ? ORDER BY seq"
            rows = self._query(sql, (model,))
        else:
            rows = self._query(f"SELECT {_COLUMNS} FROM variants ORDER BY seq")
        return [_row_to_variant(r) for r in rows]

    def delete_variant(
        self, variant_id: str, check: Callable[[], None] | None = None
    ) -> VariantRecord:
        with self._tx() as c:
            row = c.execute(
                f"SELECT {_COLUMNS} FROM variants WHERE id = ?", (variant_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"variant {variant_id!r} not found")
            refuse_variant_delete(c, variant_id, row["parent_model"])
            if check is not None:
                check()
            c.execute("DELETE FROM variants WHERE id = ?", (variant_id,))
        return _row_to_variant(row)
