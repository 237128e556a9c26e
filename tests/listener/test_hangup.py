"""A client that hangs up while its message is being stored: the store's work runs to its end (the
message committed and logged, or not made at all), never cut off half way by the session's cancel.

``Session`` on a real loopback socket, on both loops, with an intake whose store step waits until the
test lets it go on: the hang-up comes, and is seen by the session, while the step is waiting.
"""

from __future__ import annotations

import asyncio

from spoolerd.listener.commands import Reply
from spoolerd.listener.protocol import Session, Transaction
from spoolerd.listener.stdio import StdioIntake


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
    """A session that says when it has seen the client's end of the connection (and asked aiosmtpd to
    cancel its task, as ``eof_received`` does)."""

    def eof_received(self) -> bool | None:
        try:
            return super().eof_received()
        finally:
            assert isinstance(self.context, HeldStore)
            self.context.lost.set()


async def _reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if line[3:4] != b"-":
            return line


async def test_a_client_hanging_up_while_its_message_is_stored_does_not_cut_the_store_off() -> None:
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
        writer.close()  # gone while the store works
        await asyncio.wait_for(intake.lost.wait(), 30)  # seen: the session's cancel is asked
        assert intake.task is not None and not intake.task.done()
        intake.go_on.set()
        await asyncio.wait_for(asyncio.wait([intake.task]), 30)
        assert intake.outcome == "stored"  # ran to its end
        assert intake.task.cancelled()  # then the session was cancelled, as the hang-up asked
    finally:
        server.close()
        await server.wait_closed()
