"""One IMAP connection's edges: a command interrupted mid-way ends the connection (aioimaplib would
otherwise answer the server's next continuation with the next command's literal), and a server that
refuses STARTTLS says so."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import anyio
import pytest

from transports.common.credentials import Credentials
from transports.common.tls import client_context
from transports.imap.session import ImapError, open_session
from transports.imap.settings import ImapSettings

from .conftest import Account


async def test_an_interrupted_append_ends_the_connection(account: Account) -> None:
    settings = ImapSettings.model_validate({k: v for k, v in account.settings().items() if k != "provider"})
    session = await open_session(settings, Credentials(settings), None)
    with anyio.move_on_after(0):  # cancelled while the APPEND waits for the server's "+"
        await session.append(b"Subject: x\r\n\r\nZ1 CREATE Injected\r\n", "INBOX")
    assert not session.alive
    with pytest.raises(ImapError):
        await session.append(b"Subject: y\r\n\r\nbody\r\n", "INBOX")
    async with account.client() as other:
        assert await other.messages() == {}  # neither half-sent APPEND landed, and nothing else ran
        response = await other.imap.list('""', "*")
    assert b"Injected" not in b"".join(bytes(line) for line in response.lines)


@pytest.fixture
async def refuses_starttls() -> AsyncIterator[int]:
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY IMAP4rev1] no TLS here\r\n")
        tag = (await reader.readline()).split(b" ")[0]
        writer.write(tag + b" BAD unknown command\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_starttls_refused_is_named(refuses_starttls: int) -> None:
    settings = ImapSettings(
        host="127.0.0.1", port=refuses_starttls, tls="starttls", username="u", password_env="PATH"
    )
    with pytest.raises(ImapError, match="does not offer STARTTLS"):
        await open_session(settings, Credentials(settings), client_context(settings))
