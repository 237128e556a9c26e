"""The SQLite store as the conformance suite's ``StoreBackend``: a fresh database file per test."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

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
