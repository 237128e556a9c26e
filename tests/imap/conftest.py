"""A real Dovecot for the IMAP tests: one private instance per test session (plain IMAP with STARTTLS,
and implicit TLS with a certificate from a trustme CA), a fresh account per test, and a plain aioimaplib
client playing "another mail client" to put messages in and look at what the transport did."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aioimaplib
import pytest
import trustme

from tests.peers import dovecot
from tests.peers.dovecot import Dovecot
from tests.peers.ports import free_port
from transports.imap.wire import parse_fetch, parse_search

_numbers = itertools.count(1)
PASSWORD = "dovecot-secret"
Test = TypeVar("Test", bound=Callable[..., Any])


def on_both_loops(test: Test) -> Test:
    """Run ``test`` on uvloop (the loop the daemon runs on) as well as on asyncio's own: for everything
    that involves TLS, where the two loops' transports differ."""
    test.__dict__["on_both_loops"] = True
    return test


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Tests marked ``on_both_loops`` (and every test of a module whose ``ON_BOTH_LOOPS`` is true) run
    on asyncio's loop and on uvloop's; the rest on asyncio's."""
    import uvloop

    function = getattr(item, "function", None)
    module = getattr(item, "module", None)
    if getattr(function, "on_both_loops", False) or getattr(module, "ON_BOTH_LOOPS", False):
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("imapca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def server(ca: trustme.CA) -> Iterator[Dovecot]:
    why = dovecot.available()
    if why is not None:
        if os.environ.get("SPOOLERD_REQUIRE_PEERS"):
            pytest.fail(why)
        pytest.skip(why)
    instance = Dovecot(free_port(), password=PASSWORD, imaps_port=free_port())
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_path, key_path = instance.root / "cert.pem", instance.root / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    instance.cert = (cert_path, key_path)
    instance.start()
    yield instance
    instance.stop()


@dataclass
class Account:
    server: Dovecot
    user: str
    password: str
    password_file: Path

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """A ``[transports.NAME]`` section for this account over plain IMAP."""
        return {
            "provider": "imap",
            "host": "127.0.0.1",
            "port": self.server.imap_port,
            "tls": "none",
            "username": self.user,
            "password_file": str(self.password_file),
            **overrides,
        }

    @asynccontextmanager
    async def client(self) -> AsyncIterator[Client]:
        imap = aioimaplib.IMAP4("127.0.0.1", self.server.imap_port, timeout=10)
        await imap.wait_hello_from_server()
        response = await imap.login(self.user, self.password)
        assert response.result == "OK", response
        try:
            yield Client(imap)
        finally:
            await imap.logout()
            imap.protocol.transport.close()  # LOGOUT does not close it; the server's EOF may come late


class Client:
    """Another mail client on the same account."""

    def __init__(self, imap: aioimaplib.IMAP4) -> None:
        self.imap = imap

    async def append(self, content: bytes, mailbox: str = "INBOX", flags: str | None = None) -> None:
        response = await self.imap.append(content, mailbox=mailbox, flags=flags)
        assert response.result == "OK", response

    async def create(self, mailbox: str) -> None:
        response = await self.imap.create(mailbox)
        assert response.result == "OK", response

    async def messages(self, mailbox: str = "INBOX") -> dict[int, tuple[set[str], bytes]]:
        """UID -> (flags, content) of every message in ``mailbox``."""

        selected = await self.imap.select(mailbox)
        assert selected.result == "OK", selected
        response = await self.imap.uid("fetch", "1:*", "(UID FLAGS BODY.PEEK[])")
        assert response.result == "OK", response
        return {f.uid: (set(f.flags), f.literal or b"") for f in parse_fetch(response.lines)}

    async def wait_for(self, mailbox: str, count: int) -> None:
        """Until ``mailbox`` holds ``count`` messages or more: told by the server's IDLE push, not polled."""
        selected = await self.imap.select(mailbox)
        assert selected.result == "OK", selected
        while True:
            found = await self.imap.uid_search("ALL", charset=None)
            if len(parse_search(found.lines)) >= count:
                return
            idle = await self.imap.idle_start(timeout=60)
            await self.imap.wait_server_push(timeout=60)
            self.imap.idle_done()
            await asyncio.wait_for(idle, 10)

    async def delete(self, mailbox: str) -> None:
        response = await self.imap.delete(mailbox)
        assert response.result == "OK", response


@pytest.fixture
def account(server: Dovecot, tmp_path: Path) -> Account:
    return new_account(server, tmp_path)


def new_account(server: Dovecot, directory: Path) -> Account:
    """A fresh user on the shared Dovecot: an empty mailbox of its own."""
    user = f"user{next(_numbers)}"
    path = directory / f"{user}.password"
    path.write_text(server.password + "\n")
    return Account(server, user, server.password, path)


def message(number: int, *, size: int = 0, subject: str = "") -> bytes:
    """A distinct RFC 5322 message, with odd bytes in the body to catch any mangling."""
    body = f"message {number}\r\n.leading dot\r\n* OK not a response\r\n)\r\n{{5}}\r\n".encode()
    body += b"x" * max(0, size - len(body))
    return (
        (
            "From: sender@example.org\r\nTo: user@example.org\r\n"
            f"Subject: {subject or f'number {number}'}\r\n"
            f"Message-ID: <{number}.{next(_numbers)}@test>\r\nDate: Mon, 23 Nov 2026 00:00:00 +0000\r\n\r\n"
        ).encode()
        + body
        + b"\r\n"
    )
