"""The I/O under a transaction: once aiosmtplib has set up the session (greeting, EHLO, STARTTLS, AUTH),
the connection's transport is handed to this protocol, which writes commands (pipelined when the relay
offers PIPELINING) and hands back the replies ``wire.ReplyParser`` finds, in order."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import typing
from collections.abc import Iterable

import aiosmtplib

from .wire import ReplyParser, SmtpProtocolError

__all__ = ["Channel", "Connection", "ConnectionLost"]


class ConnectionLost(ConnectionError):
    """The relay closed the connection, or it broke."""


class Channel(asyncio.Protocol):
    def __init__(self) -> None:
        self._parser = ReplyParser()
        self._replies: collections.deque[tuple[int, str]] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self.transport: asyncio.Transport | None = None
        # done once the connection is closed: a TLS one only after the close_notify exchange, a plain
        # one once its unsent data is written (the socket is closed by then, or on the same loop turn)
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def take_over(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        transport.set_protocol(self)

    # -- asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        try:
            self._replies.extend(self._parser.feed(data))
        except SmtpProtocolError as exc:
            self._fail(exc)
            if self.transport is not None:
                self.transport.close()
            return
        self._wake()

    def eof_received(self) -> bool:
        self._fail(ConnectionLost("the relay closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionLost(f"connection lost: {exc}" if exc else "the relay closed the connection"))
        self._writable.set()
        if not self.lost.done():
            self.lost.set_result(None)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- use

    @property
    def usable(self) -> bool:
        return self._error is None and self.transport is not None and not self.transport.is_closing()

    def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        assert self.transport is not None
        self.transport.write(data)

    def writelines(self, pieces: Iterable[bytes]) -> None:
        """``pieces`` written as one: the transport sends them together (a gathering write)."""
        if self._error is not None:
            raise self._error
        assert self.transport is not None
        self.transport.writelines(pieces)

    async def drain(self) -> None:
        await self._writable.wait()
        if self._error is not None:
            raise self._error

    def next_reply(self) -> tuple[int, str] | None:
        """A reply already received, if any (else ``reply`` waits for one)."""
        return self._replies.popleft() if self._replies else None

    async def reply(self) -> tuple[int, str]:
        """The next reply (the caller bounds the wait with a timeout)."""
        while not self._replies:
            if self._error is not None:
                raise self._error
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._replies.popleft()

    def close(self, *, polite: bool) -> None:
        if self.transport is None:
            return
        if polite and self.usable:
            with contextlib.suppress(OSError, RuntimeError):
                self.transport.write(b"QUIT\r\n")
        self.transport.close()

    def abort(self) -> None:
        """Close at once, unsent data and a TLS close_notify exchange in progress dropped."""
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Connection:
    """A session ready for transactions: what the relay offers, and its channel."""

    __slots__ = ("channel", "extensions", "idle_since", "sent")

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self.extensions = dict(client.esmtp_extensions)
        # any loop's stream transport (uvloop's are not asyncio.Transport subclasses)
        transport = typing.cast(asyncio.Transport, client.transport)
        assert transport is not None
        self.channel = Channel()
        self.channel.take_over(transport)
        self.sent = 0  # transactions started on it
        self.idle_since = 0.0  # loop time it went back to the pool

    @property
    def usable(self) -> bool:
        return self.channel.usable

    @property
    def pipelining(self) -> bool:
        return "pipelining" in self.extensions

    def close(self, *, polite: bool) -> None:
        """Close at once; ``polite`` sends QUIT first (without waiting for its reply)."""
        self.channel.close(polite=polite)
