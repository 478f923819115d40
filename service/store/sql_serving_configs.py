"""Serving configs in SQL shared by both backends: a mixin (table `serving_configs`)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from service.store.interfaces import ServingConfigRepository
from service.store.sql_codec import from_json, now, time_to_text, to_json
from service.store.sql_references import require_model
from service.store.sql_types import Connection


class SqlServingConfigs(ServingConfigRepository):
    """Needs `_tx()` (a write transaction) and `_query(sql, params)` from the backend."""

    _tx: Callable[..., AbstractContextManager[Connection]]
    _query: Callable[..., list[Any]]

    def set_serving_config(self, name: str, config: dict[str, Any]) -> None:
        with self._tx() as c:
            require_model(c, name, 0)
            c.execute(
                "INSERT INTO serving_configs (name, config, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET config = excluded.config, "
                "updated_at = excluded.updated_at",
                (name, to_json(config), time_to_text(now())),
            )

    def get_serving_config(self, name: str) -> dict[str, Any] | None:
        rows = self._query("SELECT config FROM serving_configs WHERE name = ?", (name,))
        return from_json(rows[0]["config"]) if rows else None
