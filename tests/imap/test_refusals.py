"""What a server refuses: IDLE (the account is polled on the same connection, not reconnected in a loop)
and a ``move_to`` mailbox that does not exist (a failure in the status row, said once)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest

from spoolerd.transport import Direction
from tests.conftest import FakeClock
from tests.engine.harness import spooler

from .conftest import Account, message


@dataclass
class NoIdleServer:
    """A scripted IMAP server that offers IDLE and answers it with NO; an empty INBOX otherwise."""

    port: int = 0
    connections: int = 0
    commands: list[bytes] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(b"* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n")
        while line := await reader.readline():
            tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
            verb = rest.split(b" ")[0].upper()
            if verb == b"CAPABILITY":
                writer.write(b"* CAPABILITY IMAP4rev1 IDLE\r\n" + tag + b" OK done\r\n")
            elif verb == b"LOGIN":
                writer.write(tag + b" OK [CAPABILITY IMAP4rev1 IDLE] logged in\r\n")
            elif verb == b"SELECT":
                writer.write(
                    b"* 0 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 1] ok\r\n"
                    + tag
                    + b" OK [READ-WRITE] selected\r\n"
                )
            elif verb == b"UID":
                writer.write(b"* SEARCH\r\n" + tag + b" OK done\r\n")
            elif verb == b"IDLE":
                writer.write(tag + b" NO IDLE is switched off here\r\n")
            elif verb == b"LOGOUT":
                writer.write(b"* BYE\r\n" + tag + b" OK bye\r\n")
            else:
                writer.write(tag + b" BAD not scripted\r\n")
            await writer.drain()
            async with self.changed:
                self.commands.append(verb)
                self.changed.notify_all()
        writer.close()


@pytest.fixture
async def no_idle() -> AsyncIterator[NoIdleServer]:
    script = NoIdleServer()
    server = await asyncio.start_server(script.serve, "127.0.0.1", 0)
    script.port = server.sockets[0].getsockname()[1]
    yield script
    server.close()


async def test_a_server_refusing_idle_is_polled_on_one_connection(
    tmp_path: Path, clock: FakeClock, account: Account, no_idle: NoIdleServer
) -> None:
    settings = account.settings(port=no_idle.port, poll_interval=0.2, reconnect_initial=0.2)
    async with spooler(tmp_path, clock, {"mail": settings}) as h:
        with anyio.fail_after(10):  # five polls: a pass (SELECT, SEARCH) and a look before waiting
            async with no_idle.changed:
                await no_idle.changed.wait_for(lambda: no_idle.commands.count(b"SELECT") >= 10)
        row = h.transport("mail").status()
    assert no_idle.connections == 1
    assert no_idle.commands.count(b"IDLE") == 1  # asked once; that connection never idles again
    assert "failure" not in row["status"]


async def test_a_missing_move_to_mailbox_is_a_failure_in_status(
    tmp_path: Path, clock: FakeClock, account: Account
) -> None:
    async with account.client() as other:
        for i in range(12):
            await other.append(message(i))
    settings = account.settings(after_download="move", move_to="Nowhere", fetch_batch=5)
    async with spooler(tmp_path, clock, {"mail": settings}) as h:
        transport = h.transport("mail")
        with anyio.fail_after(30):
            await transport.flush(Direction.DOWNLOAD)
        row = transport.status()
        assert "failure" in row["status"]
        assert "Nowhere" in row["last_error"] and "12 messages" in row["last_error"]
        assert not any("renumbered" in n or "UIDVALIDITY" in n for n in row["notices"])
        async with account.client() as other:
            await other.create("Nowhere")
        with anyio.fail_after(30):
            await transport.flush(Direction.DOWNLOAD)
        row = transport.status()
        assert "failure" not in row["status"] and row["last_error"] is None
    async with account.client() as other:
        assert await other.messages() == {}
        assert len(await other.messages("Nowhere")) == 12
