"""The SQLite store as the conformance suite's ``StoreBackend``: a fresh database file per test."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from stores.common.filling import FILLED_COLUMNS, copy_children

__all__ = ["SqliteBackend"]


class SqliteBackend:
    provider = "sqlite"

    async def create(self, location: Path) -> dict[str, Any]:
        return {"path": str(location / "store.db")}

    async def drop(self, options: dict[str, Any]) -> None:
        """The file lives in the test's temporary directory, which pytest removes."""

    async def integrity(self, options: dict[str, Any]) -> str:
        def check() -> str:
            conn = sqlite3.connect(options["path"])
            try:
                return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
            finally:
                conn.close()

        return await asyncio.to_thread(check)

    async def fill_deferred(self, options: dict[str, Any], count: int, due_at: float) -> None:
        """``count`` copies of the newest queued message, deferred until ``due_at`` and submitted before
        it, written straight in SQL: a large queue in seconds (bench/queue_size.py, query-plan tests)."""

        def fill() -> None:
            conn = sqlite3.connect(options["path"])
            try:
                with conn:
                    (template,) = conn.execute("SELECT MAX(id) FROM messages WHERE queued = 1").fetchone()
                    names = [row[1] for row in conn.execute("PRAGMA table_info(messages)")]
                    kept = ", ".join(n for n in names if n not in FILLED_COLUMNS)
                    conn.execute(_FILL_DEFERRED.format(kept=kept), (template, count, due_at))
                    conn.execute(_FILL_RECIPIENTS, (template,))
                    conn.execute(_FILL_CONTENTS, (template,))
            finally:
                conn.close()

        await asyncio.to_thread(fill)


_FILL_DEFERRED = (
    "WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < ?2)"
    " INSERT INTO messages ({kept}, client_submit_time, due_at, next_attempt)"
    " SELECT {kept}, client_submit_time - (?2 - k + 1) * 0.001, ?3, ?3 FROM messages, n WHERE id = ?1"
)
_FILL_RECIPIENTS, _FILL_CONTENTS = copy_children(lambda n: f"?{n}")
