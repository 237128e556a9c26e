"""Connections to the relay, reused across messages: at most ``size`` open, each used for at most
``per_connection`` transactions, an idle one closed (QUIT) after ``idle_timeout`` by one timer for the
pool, armed for the oldest idle connection only while there is one (no sweep, and no timer per use).
A connection that broke, or whose transaction left it in doubt, is closed, never handed out.

Closing a connection only starts it (a TLS one ends with a close_notify exchange, a round trip):
``close`` returns once every connection the pool closed is closed, giving the relays ``CLOSE_TIMEOUT``
seconds before it aborts the rest, so that nothing is left open when the loop ends."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from .channel import Connection

log = structlog.get_logger("spoolerd.transports.smtp")

__all__ = ["ConnectionPool"]

CLOSE_TIMEOUT = 5.0  # for the relays to finish closing, at stop
ABORTED_TIMEOUT = 1.0  # for the loop to finish an abort (local: a few loop turns)


class ConnectionPool:
    def __init__(
        self,
        opener: Callable[[], Awaitable[Connection]],
        *,
        size: int,
        per_connection: int,
        idle_timeout: float,
        peer: str = "",
    ) -> None:
        self._opener = opener
        self._peer = peer  # for the debug lines
        self._size = size
        self._per_connection = per_connection
        self._idle_timeout = idle_timeout
        self._idle: list[Connection] = []  # most recently used last: warm connections first
        self._slots: asyncio.Semaphore | None = None  # made in the running loop
        self._timer: asyncio.TimerHandle | None = None  # for the oldest idle connection
        self.opened = 0  # connections opened so far (status and tests)
        self._closed = False  # after close(): connections coming back are closed, not kept
        self._closing: set[Connection] = set()  # closed here, not yet closed by the loop

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def acquire(self) -> Connection:
        """An idle connection if one is still up, else a new one (which may raise ``SessionFailed``)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._size)
        await self._slots.acquire()
        try:
            while self._idle:
                conn = self._idle.pop()
                if conn.usable:
                    break
                self._close(conn, polite=False, why="found closed by the relay")
            else:
                conn = await self._opener()
                self.opened += 1
        except BaseException:
            self._slots.release()
            raise
        return conn

    def release(self, conn: Connection, *, reusable: bool) -> None:
        """Hand ``conn`` back: kept for the next message if it is sound and has uses left, else closed."""
        assert self._slots is not None
        try:
            if reusable and conn.usable and conn.sent < self._per_connection and not self._closed:
                loop = asyncio.get_running_loop()
                conn.idle_since = loop.time()
                self._idle.append(conn)
                if self._timer is None:
                    self._timer = loop.call_later(self._idle_timeout, self._expire)
            else:
                why = "used up" if conn.sent >= self._per_connection else "broken or in doubt"
                self._close(conn, polite=reusable, why="stopping" if self._closed else why)
        finally:
            self._slots.release()

    def _expire(self) -> None:
        """Close what has been idle ``idle_timeout``; re-arm for the oldest one left, if any."""
        self._timer = None
        loop = asyncio.get_running_loop()
        cutoff = loop.time() - self._idle_timeout
        expired = [c for c in self._idle if c.idle_since <= cutoff]
        self._idle = [c for c in self._idle if c.idle_since > cutoff]  # order kept: warm ones last
        for conn in expired:
            self._close(conn, polite=True, why="idle")
        if self._idle:
            oldest = min(c.idle_since for c in self._idle)
            self._timer = loop.call_at(oldest + self._idle_timeout, self._expire)

    async def close(self) -> None:
        """Close every idle connection (at stop; connections in use are closed when they come back),
        and wait until the connections closed so far are (aborted after ``CLOSE_TIMEOUT``)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._idle:
            self._close(self._idle.pop(), polite=True, why="stopping")
        if not self._closing:
            return
        _, pending = await asyncio.wait([c.channel.lost for c in self._closing], timeout=CLOSE_TIMEOUT)
        if pending:
            log.debug("connections aborted", relay=self._peer, count=len(pending), timeout=CLOSE_TIMEOUT)
            for conn in list(self._closing):
                conn.channel.abort()
            await asyncio.wait(pending, timeout=ABORTED_TIMEOUT)

    def _close(self, conn: Connection, *, polite: bool, why: str) -> None:
        conn.close(polite=polite)
        if not conn.channel.lost.done():
            self._closing.add(conn)
            conn.channel.lost.add_done_callback(lambda _: self._closing.discard(conn))
        log.debug("connection closed", relay=self._peer, reason=why, transactions=conn.sent)
