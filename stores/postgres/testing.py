"""The PostgreSQL store as the conformance suite's ``StoreBackend``, and throwaway test databases.

A test session makes one database (``scratch_database``) and every test a schema of its own in it, which
is much cheaper than a database per test; dropping the schema forgets the store.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from stores.common.filling import FILLED_COLUMNS, copy_children

__all__ = ["PostgresBackend", "create_database", "drop_database", "with_database"]

_SCHEMAS = itertools.count(1)


def with_database(dsn: str, database: str) -> str:
    """``dsn`` pointed at another database on the same server."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


async def create_database(admin_dsn: str, name: str) -> str:
    """Create the database ``name`` (dropping a leftover of that name) and return its DSN."""
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_dsn, name)


async def drop_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


class PostgresBackend:
    """Fresh stores as schemas of one database (``dsn``), each named uniquely within the session."""

    provider = "postgres"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def create(self, location: Path) -> dict[str, Any]:
        return {"dsn": self.dsn, "schema_name": f"t{os.getpid()}_{next(_SCHEMAS)}", "pool_max": 4}

    async def drop(self, options: dict[str, Any]) -> None:
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {options['schema_name']} CASCADE")
        finally:
            await conn.close()

    async def integrity(self, options: dict[str, Any]) -> str:
        """Every message has its content and every recipient its message (the foreign keys' promise),
        and every table can be read to its end."""
        conn = await asyncpg.connect(
            self.dsn, timeout=10, server_settings={"search_path": options["schema_name"]}
        )
        try:
            orphans = await conn.fetchval(
                "SELECT (SELECT count(*) FROM messages m WHERE NOT EXISTS"
                "  (SELECT 1 FROM contents c WHERE c.message_id = m.id))"
                " + (SELECT count(*) FROM recipients r WHERE NOT EXISTS"
                "  (SELECT 1 FROM messages m WHERE m.id = r.message_id))"
            )
            for table in ("folders", "messages", "contents", "recipients", "transport_state"):
                await conn.fetchval(f"SELECT count(*) FROM {table}")
        finally:
            await conn.close()
        return "ok" if orphans == 0 else f"{orphans} rows without their message or content"

    async def fill_deferred(self, options: dict[str, Any], count: int, due_at: float) -> None:
        """``count`` copies of the newest queued message, deferred until ``due_at`` and submitted before
        it, written straight in SQL: a large queue in seconds (bench/queue_size.py, query-plan tests)."""
        conn = await asyncpg.connect(
            options["dsn"], timeout=10, server_settings={"search_path": options["schema_name"]}
        )
        try:
            async with conn.transaction():
                template = await conn.fetchval("SELECT MAX(id) FROM messages WHERE queued")
                names = await conn.fetch(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = $1"
                    " AND table_name = 'messages' ORDER BY ordinal_position",
                    options["schema_name"],
                )
                kept = ", ".join(n for (n,) in names if n not in FILLED_COLUMNS)
                await conn.execute(_FILL_DEFERRED.format(kept=kept), template, count, due_at)
                await conn.execute(_FILL_RECIPIENTS, template)
                await conn.execute(_FILL_CONTENTS, template)
            await conn.execute("ANALYZE messages")
        finally:
            await conn.close()


_FILL_DEFERRED = (
    "INSERT INTO messages ({kept}, client_submit_time, due_at, next_attempt)"
    " SELECT {kept}, client_submit_time - ($2 - k + 1) * 0.001, $3, $3"
    " FROM messages, generate_series(1, $2::int) AS k WHERE id = $1 ORDER BY k"
)
_FILL_RECIPIENTS, _FILL_CONTENTS = copy_children(lambda n: f"${n}")
