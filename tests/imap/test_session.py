"""One IMAP connection's edges: a command interrupted mid-way ends the connection (aioimaplib would
otherwise answer the server's next continuation with the next command's literal), and a server that
refuses STARTTLS says so."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from transports.common.credentials import Credentials
from transports.common.tls import client_context
from transports.imap.session import ImapError, LoginRefused, open_session
from transports.imap.settings import ImapSettings

from .conftest import Account, on_both_loops


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


@on_both_loops
async def test_starttls_refused_is_named(refuses_starttls: int) -> None:
    settings = ImapSettings(
        host="127.0.0.1", port=refuses_starttls, tls="starttls", username="u", password_env="PATH"
    )
    with pytest.raises(ImapError, match="does not offer STARTTLS"):
        await open_session(settings, Credentials(settings), client_context(settings))


TOKEN = "good-token"


@pytest.fixture
async def xoauth2_server() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A scripted IMAP server that takes AUTHENTICATE XOAUTH2 with TOKEN only; a refusal goes the way of
    RFC 7628: an error challenge, the client's empty answer, then NO."""
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        authenticated = False
        writer.write(b"* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] ready\r\n")
        while line := await reader.readline():
            tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
            seen.append(rest)
            if rest.startswith(b"CAPABILITY"):
                caps = b"IMAP4rev1 IDLE UIDPLUS MOVE" if authenticated else b"IMAP4rev1 AUTH=XOAUTH2"
                writer.write(b"* CAPABILITY " + caps + b"\r\n" + tag + b" OK done\r\n")
            elif rest.startswith(b"AUTHENTICATE XOAUTH2 "):
                sasl = base64.b64decode(rest.split()[-1])
                if sasl == f"user=me\x01auth=Bearer {TOKEN}\x01\x01".encode():
                    authenticated = True
                    writer.write(tag + b" OK logged in\r\n")
                else:
                    writer.write(b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n")
                    await writer.drain()
                    answer = await reader.readline()
                    seen.append(b"answer:" + answer)
                    writer.write(tag + b" NO [AUTHENTICATIONFAILED] invalid token\r\n")
            elif rest.startswith(b"LOGOUT"):
                writer.write(b"* BYE\r\n" + tag + b" OK bye\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], seen
    server.close()
    await server.wait_closed()


async def test_xoauth2_renews_a_refused_token_once(
    xoauth2_server: tuple[int, list[bytes]], tmp_path: Path
) -> None:
    port, seen = xoauth2_server
    tokens = tmp_path / "tokens"
    tokens.write_text("stale-token\n" + TOKEN + "\n")
    script = tmp_path / "token.sh"  # prints the first line, then drops it: each run a newer token
    script.write_text(f"#!/bin/sh\nhead -n1 {tokens}\nsed -i 1d {tokens}\n")
    script.chmod(0o755)
    settings = ImapSettings(
        host="127.0.0.1", port=port, tls="none", username="me", auth="xoauth2", token_command=[str(script)]
    )
    session = await open_session(settings, Credentials(settings), None)
    assert session.has("MOVE")  # capabilities asked again once logged in
    await session.logout()
    assert b"answer:\r\n" in seen  # the error challenge was answered, so the NO came
    assert sum(line.startswith(b"AUTHENTICATE") for line in seen) == 2


async def test_xoauth2_refused_twice_is_a_login_refusal(
    xoauth2_server: tuple[int, list[bytes]], tmp_path: Path
) -> None:
    port, _ = xoauth2_server
    token = tmp_path / "token"
    token.write_text("never-good\n")
    settings = ImapSettings(
        host="127.0.0.1", port=port, tls="none", username="me", auth="xoauth2", token_file=token
    )
    with anyio.fail_after(10), pytest.raises(LoginRefused, match="invalid token"):
        await open_session(settings, Credentials(settings), None)


async def test_a_server_that_greets_and_then_says_nothing_times_out() -> None:
    writers: list[asyncio.StreamWriter] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        writer.write(b"* OK hello\r\n")  # and never answers the CAPABILITY that follows

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = ImapSettings(
        host="127.0.0.1", port=port, tls="none", username="u", password_env="PATH", connect_timeout=0.5
    )
    try:
        with anyio.fail_after(5), pytest.raises(ImapError, match="could not connect: timed out"):
            await open_session(settings, Credentials(settings), None)
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()
