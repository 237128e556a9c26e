"""The store's connection pool: one transaction per call, PostgreSQL's failures as ``StoreUnavailable``.

A changing transaction may ask for a wake-up: one ``pg_notify`` in it, which PostgreSQL delivers to the
listening daemons only if and when the transaction commits (several in one transaction fold into one).
Finishes, which give the other daemons nothing to do but which their watchers may want to see, are
announced after they commit instead (``finished``): one notice at a time, a burst folded into the next.
The payload is this store object's instance id, then a space and the reason for a finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import asyncpg

from spoolerd.errors import StoreError, StoreUnavailable

from .schema import migrate
from .settings import PostgresSettings

__all__ = ["Database", "Transaction", "affected"]

T = TypeVar("T")
Transaction = Callable[[Any], Awaitable[T]]
IsolationLevel = Literal["read_committed", "repeatable_read", "serializable"]

# Every connection's settings. The store's statements are prepared once per connection (asyncpg's
# cache) and each is a lookup by key or a walk of one index in order: a generic plan serves every
# execution, instead of PostgreSQL planning again with each call's values (0.7 ms of the server's CPU
# for the finish statement, three times what running it costs).
_SESSION = {"application_name": "spoolerd", "plan_cache_mode": "force_generic_plan"}

# what a lost server, a cut connection or a restart looks like from asyncpg
_UNAVAILABLE = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


async def _no_reset(_conn: Any) -> None:
    """A connection goes back to the pool as it is: the store keeps no session state (no advisory lock,
    cursor, LISTEN or SET outlives its transaction, and asyncpg rolls back an open one itself), so the
    default reset query would be one more round trip after every transaction for nothing."""


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
        self._finishes = 0  # finishes committed and not announced yet
        self._announcing: asyncio.Task[None] | None = None

    async def connect(self) -> Any:
        """One connection outside the pool (the listener's)."""
        s = self._settings
        try:
            return await asyncpg.connect(
                s.dsn,
                password=self._password,
                timeout=s.connect_timeout,
                command_timeout=s.command_timeout,
                server_settings=_SESSION | {"search_path": s.schema_name},
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
                server_settings=_SESSION | {"search_path": s.schema_name},
                reset=_no_reset,
            )
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"PostgreSQL at {s.dsn}: {exc}") from exc

    async def run_one(self, sql: str, *args: Any, writes: bool = True) -> Any:
        """One statement on its own (PostgreSQL commits it as its own transaction: one round trip, no
        BEGIN and COMMIT around it); its first row. One that only reads (``writes=False``) is not
        counted among ``transactions``."""
        if self._pool is None:
            raise StoreUnavailable("the PostgreSQL store is not started")
        s = self._settings
        try:
            async with self._slots, self._pool.acquire(timeout=s.connect_timeout) as conn:
                row = await conn.fetchrow(sql, *args)
        except StoreError:
            raise
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"PostgreSQL at {s.dsn}: {type(exc).__name__}: {exc}") from exc
        if writes:
            self.transactions += 1
        return row

    def finished(self) -> None:
        """A finish has committed: announce it (a hint, after the fact) unless a notice is on its way,
        in which case the next one covers it."""
        self._finishes += 1
        if self._announcing is None:
            self._announcing = asyncio.get_running_loop().create_task(self._announce())

    async def _announce(self) -> None:
        try:
            while self._finishes and self._pool is not None:
                self._finishes = 0
                try:
                    await self._notify(self._pool, f"{self.instance} finish")
                except _UNAVAILABLE:
                    return  # a hint: the watchers re-read the queue when they reconnect
        finally:
            self._announcing = None

    async def _notify(self, pool: asyncpg.Pool, payload: str) -> None:
        """One NOTIFY on its own (no transaction around it: one round trip)."""
        async with self._slots, pool.acquire(timeout=self._settings.connect_timeout) as conn:
            await conn.execute("SELECT pg_notify($1, $2)", self.channel, payload)

    async def close(self) -> None:
        if self._announcing is not None:
            self._announcing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._announcing
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def run(
        self,
        body: Transaction[T],
        *,
        notify: bool = False,
        read_only: bool = False,
        isolation: IsolationLevel | None = None,
    ) -> T:
        """``body(conn)`` in one transaction, committed before this returns; ``notify``: wake the other
        daemons listening on this schema once it has committed; ``isolation``: this transaction's, not
        the database's default."""
        if self._pool is None:
            raise StoreUnavailable("the PostgreSQL store is not started")
        s = self._settings
        try:
            async with self._slots, self._pool.acquire(timeout=s.connect_timeout) as conn:
                async with conn.transaction(readonly=read_only, isolation=isolation):
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
