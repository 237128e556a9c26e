"""A connection lost while its message is being stored: the store's work runs to its end (the
message committed and logged, or not made at all), never cut off half way by the session's cancel.

``Session`` on a real loopback socket, on both loops, with an intake whose store step waits until the
test lets it go on: the hang-up comes, and is seen by the session, while the step is waiting.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from spoolerd.listener.commands import Reply
from spoolerd.listener.protocol import Session
from spoolerd.listener.stdio import StdioIntake
from spoolerd.listener.transaction import Transaction


class HeldStore(StdioIntake):
    """The store step waits for ``go_on``; what became of it is ``outcome``."""

    def __init__(self) -> None:
        super().__init__("tester")
        self.entered = asyncio.Event()
        self.go_on = asyncio.Event()
        self.lost = asyncio.Event()
        self.outcome = "not reached"
        self.task: asyncio.Task[object] | None = None  # where the store step runs: the session's own

    async def accept(self, session: Session, tx: Transaction, content: bytes) -> Reply:
        self.task = asyncio.current_task()
        self.entered.set()
        try:
            await self.go_on.wait()
        except asyncio.CancelledError:
            self.outcome = "cut off"
            raise
        self.outcome = "stored"
        return Reply(250, "2.0.0", "Ok: queued as 1")


class Watched(Session):
    """A session that says when it has seen the end of the connection (and asked aiosmtpd to cancel
    its task, as ``eof_received`` and ``connection_lost`` do)."""

    def eof_received(self) -> bool | None:
        try:
            return super().eof_received()
        finally:
            self._seen()

    def connection_lost(self, error: Exception | None) -> None:
        try:
            super().connection_lost(error)
        finally:
            self._seen()

    def _seen(self) -> None:
        assert isinstance(self.context, HeldStore)
        self.context.lost.set()


def _reset(writer: asyncio.StreamWriter, session: Session) -> None:
    """The client's connection reset (RST): SO_LINGER 0, then closed at once."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _server_side(writer: asyncio.StreamWriter, session: Session) -> None:
    """Closed by the server (a timeout, a shutdown's last phase)."""
    assert session.transport is not None
    session.transport.close()


HANG_UPS = {"fin": lambda writer, session: writer.close(), "rst": _reset, "server": _server_side}


async def _reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if line[3:4] != b"-":
            return line


@pytest.mark.parametrize("hang_up", sorted(HANG_UPS))
async def test_a_connection_lost_while_its_message_is_stored_does_not_cut_the_store_off(hang_up: str) -> None:
    loop = asyncio.get_running_loop()
    intake = HeldStore()
    sessions: list[Watched] = []

    def session() -> Watched:
        sessions.append(Watched(intake, loop))
        return sessions[-1]

    server = await loop.create_server(session, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await _reply(reader)).startswith(b"220")
        for command, code in [(b"EHLO client", b"250"), (b"MAIL FROM:<a@example.com>", b"250"),
                              (b"RCPT TO:<b@example.com>", b"250"), (b"DATA", b"354")]:  # fmt: skip
            writer.write(command + b"\r\n")
            assert (await _reply(reader)).startswith(code)
        writer.write(b"Subject: hung up\r\n\r\nbody\r\n.\r\n")
        await asyncio.wait_for(intake.entered.wait(), 30)
        (one,) = sessions
        HANG_UPS[hang_up](writer, one)  # gone while the store works
        await asyncio.wait_for(intake.lost.wait(), 30)  # seen: the session's cancel is asked
        assert intake.task is not None and not intake.task.done()
        intake.go_on.set()
        await asyncio.wait_for(asyncio.wait([intake.task]), 30)
        assert intake.outcome == "stored"  # ran to its end
        assert intake.task.cancelled()  # then the session ended as the loss asked, not with an error
        writer.close()  # the test's own end of it
    finally:
        server.close()
        await server.wait_closed()
