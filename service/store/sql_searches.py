"""Searches in SQL shared by both backends: a mixin (table `searches`, one row per search job).

The spec is written before the job row (`add_search`, then `create_job`), so a worker that
claims the job always finds it; a crash in between leaves a spec no job refers to, which
nothing reads. The result is rewritten whole after every trial by the job's worker.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from service.store.interfaces import SearchRepository
from service.store.records import SearchRecord
from service.store.sql_codec import from_json, now, time_from_text, time_to_text, to_json
from service.store.sql_types import Connection

_COLUMNS = "job_id, spec, result, updated_at"


def _row_to_search(row: Any) -> SearchRecord:
    return SearchRecord(
        job_id=row["job_id"],
        spec=from_json(row["spec"]),
        result=from_json(row["result"]),
        updated_at=time_from_text(row["updated_at"]),
    )


class SqlSearches(SearchRepository):
    """Needs `_tx()` (a write transaction) and `_query(sql, params)` from the backend."""

    _tx: Callable[..., AbstractContextManager[Connection]]
    _query: Callable[..., list[Any]]

    def add_search(self, job_id: str, spec: dict[str, Any]) -> None:
        with self._tx() as c:
            c.execute(
                f"INSERT INTO searches ({_COLUMNS}) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (job_id) DO UPDATE SET spec = excluded.spec",
                (job_id, to_json(spec), "{}", time_to_text(now())),
            )

    def remove_search(self, job_id: str) -> None:
        """Undo `add_search` when the job row could not be created."""
        with self._tx() as c:
            c.execute("DELETE FROM searches WHERE job_id = ?", (job_id,))

    def get_search(self, job_id: str) -> SearchRecord | None:
        rows = self._query(f"SELECT {_COLUMNS} FROM searches WHERE job_id = ?", (job_id,))
        return _row_to_search(rows[0]) if rows else None

    def latest_search(self, model: str) -> SearchRecord | None:
        """The newest search job of `model` (by the job's creation order)."""
        rows = self._query(
            "SELECT s.job_id, s.spec, s.result, s.updated_at FROM searches s "
            "JOIN jobs j ON j.id = s.job_id WHERE j.model = ? ORDER BY j.seq DESC LIMIT 1",
            (model,),
        )
        return _row_to_search(rows[0]) if rows else None

    def put_search_result(self, job_id: str, result: dict[str, Any]) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE searches SET result = ?, updated_at = ? WHERE job_id = ?",
                (to_json(result), time_to_text(now()), job_id),
            )
