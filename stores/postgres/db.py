"""The store's connection pool: one transaction per call, PostgreSQL's failures as ``StoreUnavailable``.

A changing transaction may ask for a wake-up: one ``pg_notify`` in it, which PostgreSQL delivers to the
listening daemons only if and when the transaction commits (several in one transaction fold into one).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from spoolerd.errors import StoreError, StoreUnavailable

from .schema import migrate
from .settings import PostgresSettings

__all__ = ["Database", "Transaction", "affected"]

T = TypeVar("T")
Transaction = Callable[[Any], Awaitable[T]]

# what a lost server, a cut connection or a restart looks like from asyncpg
_UNAVAILABLE = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def affected(status: str) -> int:
    """The row count of a command status such as ``UPDATE 3`` or ``DELETE 0``."""
    return int(status.rsplit(" ", 1)[-1])


class Database:
    """A pool of connections to one schema of one PostgreSQL database."""

    def __init__(self, settings: PostgresSettings, password: str | None) -> None:
        self._settings = settings
        self._password = password
        self.channel = f"spoolerd_{settings.schema_name}"
        self.instance = uuid.uuid4().hex  # this store object's NOTIFY payload, to tell its own apart
        self._pool: asyncpg.Pool | None = None
        # callers queue here, without a deadline, for one of the pool's connections: that wait is for
        # this daemon's own work; the pool's acquire timeout then covers only reaching the server
        self._slots = asyncio.Semaphore(settings.pool_max)
        self.transactions = 0  # committed transactions (round trips that change state)

    async def connect(self) -> Any:
        """One connection outside the pool (the listener's)."""
        s = self._settings
        try:
            return await asyncpg.connect(
                s.dsn,
                password=self._password,
                timeout=s.connect_timeout,
                command_timeout=s.command_timeout,
                server_settings={"search_path": s.schema_name, "application_name": "spoolerd"},
            )
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"PostgreSQL at {s.dsn}: {exc}") from exc

    async def open(self) -> None:
        s = self._settings
        conn = await self.connect()
        try:
            await migrate(conn, s.schema_name)
        except StoreError:
            raise
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"PostgreSQL at {s.dsn}: {exc}") from exc
        finally:
            await conn.close(timeout=s.connect_timeout)
        try:
            self._pool = await asyncpg.create_pool(
                s.dsn,
                password=self._password,
                min_size=min(s.pool_min, s.pool_max),
                max_size=s.pool_max,
                timeout=s.connect_timeout,
                command_timeout=s.command_timeout,
                server_settings={"search_path": s.schema_name, "application_name": "spoolerd"},
            )
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"PostgreSQL at {s.dsn}: {exc}") from exc

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def run(self, body: Transaction[T], *, notify: bool = False, read_only: bool = False) -> T:
        """``body(conn)`` in one transaction, committed before this returns; ``notify``: wake the other
        daemons listening on this schema once it has committed."""
        if self._pool is None:
            raise StoreUnavailable("the PostgreSQL store is not started")
        s = self._settings
        try:
            async with self._slots, self._pool.acquire(timeout=s.connect_timeout) as conn:
                async with conn.transaction(readonly=read_only):
                    result = await body(conn)
                    if notify:
                        await conn.execute("SELECT pg_notify($1, $2)", self.channel, self.instance)
                if not read_only:
                    self.transactions += 1
                return result
        except StoreError:
            raise
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"PostgreSQL at {s.dsn}: {type(exc).__name__}: {exc}") from exc
