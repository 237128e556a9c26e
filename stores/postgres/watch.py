"""Wake-ups from other daemons: LISTEN on the schema's channel, on a connection of its own.

A notification is only a hint that the shared queue changed (one per committed transaction that asked
for it); a daemon then re-reads the store. When the connection is lost, the listener reconnects with a
doubling wait, and once listening again announces one re-scan: what was notified meanwhile is not lost,
only folded into that one event. Nothing runs on a timer while the connection is up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from spoolerd.retry import Backoff, Schedule

__all__ = ["Listener"]

log = structlog.get_logger("spoolerd.store.postgres")

RECONNECT = Schedule(0.1, 5.0)


class Listener:
    """Calls ``on_change(reason)`` for every notification not sent by ``own`` (``external``, or
    ``finish`` for a message another daemon finished) and once after each reconnect (``external``)."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[Any]],
        channel: str,
        own: str,
        on_change: Callable[[str], None],
        *,
        store: str,
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._own = own
        self._on_change = on_change
        self._store = store
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None

    async def start(self) -> None:
        """Listen before returning, so nothing committed after ``start`` goes unannounced."""
        self._conn = await self._listen()
        self._task = asyncio.create_task(self._run(), name=f"postgres-listen-{self._store}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await _closed(conn)

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        sender, _, reason = payload.partition(" ")
        if sender != self._own:
            self._on_change(reason or "external")

    async def _listen(self) -> Any:
        conn = await self._connect()
        try:
            await conn.add_listener(self._channel, self._notified)
        except BaseException:  # cut, refused or cancelled (a stop) half way: no connection left open
            await _closed(conn)
            raise
        return conn

    async def _run(self) -> None:
        while True:
            lost = asyncio.Event()
            self._conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
            await lost.wait()
            log.warning("store listener lost its connection; reconnecting", store=self._store)
            await self._close()
            backoff = Backoff(RECONNECT)
            while self._conn is None:
                try:
                    self._conn = await self._listen()
                except Exception as exc:  # asyncpg's own errors too: whatever it was, try again later
                    log.debug("store listener reconnect failed", store=self._store, error=str(exc))
                    await asyncio.sleep(backoff.failed())
            log.info("store listener reconnected", store=self._store)
            self._on_change("external")  # one re-scan covers whatever was notified while it was away


async def _closed(conn: Any) -> None:
    """Close ``conn`` politely if it answers within 5 s, else drop it at once: a connection the server
    cut half way must not stay open, or the event loop cannot close (uvloop waits for its handle)."""
    if conn.is_closed():
        return
    try:
        await asyncio.wait_for(conn.close(), 5.0)
    except asyncio.CancelledError:
        conn.terminate()
        raise
    except Exception:  # cut half way, or not answering: dropped at once
        conn.terminate()
