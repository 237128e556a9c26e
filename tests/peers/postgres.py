"""The PostgreSQL server the tests use: SPOOLERD_TEST_POSTGRES (a DSN of a superuser-ish role that may
create databases), by default the machine's own server on 127.0.0.1:5432 with trust auth. Tests make and
drop their own databases on it. Recipe: ../shared/PEERS.md; .ci/run makes sure one answers."""

from __future__ import annotations

import asyncio
import os

import asyncpg

__all__ = ["ADMIN_DSN", "unavailable"]

ADMIN_DSN = os.environ.get("SPOOLERD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def unavailable() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None if the server answers."""

    async def probe() -> None:
        conn = await asyncpg.connect(ADMIN_DSN, timeout=5)
        await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        return f"no PostgreSQL at {ADMIN_DSN} (set SPOOLERD_TEST_POSTGRES; .ci/run starts one): {exc}"
    return None
