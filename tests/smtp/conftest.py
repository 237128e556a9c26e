"""SMTP peers for the transport's tests: aiosmtpd on a free port (a real ESMTP server with STARTTLS,
implicit TLS and AUTH), a raw scripted server for the faults aiosmtpd cannot make (a connection dropped
in the middle of DATA), and a trustme CA for certificates."""

from __future__ import annotations

import asyncio
import base64
import gc
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from spoolerd.message import Message, MessageFlag, Recipient, RecipientKind, SubmitFlag
from spoolerd.transport import TransportContext
from stores.postgres.testing import PostgresBackend
from tests.peers.ports import free_port
from transports.smtp import SmtpSettings, SmtpTransport

USER, PASSWORD, TOKEN = "alice", "s3cret-pw", "tok-123"


@dataclass
class Received:
    sender: str
    recipients: list[str]
    content: bytes
    mail_options: list[str]


@dataclass
class Handler:
    """Accepts everything except addresses whose local part names a reply: ``r550-x@…`` is refused at
    RCPT with 550, ``d554-x@…`` makes DATA answer 554, ``s553-x@…`` as sender is refused at MAIL."""

    received: list[Received] = field(default_factory=list)
    drop_extensions: tuple[str, ...] = ()
    stall_rcpt: threading.Event | None = None  # while unset, RCPT for stall@… gets no answer
    arrived: threading.Condition = field(default_factory=threading.Condition)
    sessions: int = 0

    @staticmethod
    def _scripted(address: str, prefix: str) -> str | None:
        local = address.partition("@")[0]
        if local.startswith(prefix) and local[1:4].isdigit():
            code = local[1:4]
            status = f"{code[0]}.{'1.1' if prefix == 'r' else '6.0' if prefix == 'd' else '1.8'}"
            return f"{code} {status} scripted reply for {address}"
        return None

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        self.sessions += 1
        return [r for r in responses if not any(x in r for x in self.drop_extensions)]

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        scripted = self._scripted(address, "s")
        if scripted:
            return scripted
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("stall@") and self.stall_rcpt is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.stall_rcpt.wait, 30)
        scripted = self._scripted(address, "r")
        if scripted:
            return scripted
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        for address in envelope.rcpt_tos:
            scripted = self._scripted(address, "d")
            if scripted:
                return scripted
        assert isinstance(envelope.original_content, bytes)
        with self.arrived:
            self.received.append(
                Received(
                    envelope.mail_from or "",
                    list(envelope.rcpt_tos),
                    envelope.original_content,
                    list(envelope.mail_options),
                )
            )
            self.arrived.notify_all()
        return "250 2.0.0 queued"

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        raw = base64.b64decode(args[1]).decode() if len(args) > 1 else ""
        fields = dict(part.split("=", 1) for part in raw.split("\x01") if "=" in part)
        ok = fields.get("user") == USER and fields.get("auth") == f"Bearer {TOKEN}"
        return AuthResult(success=ok, handled=False)


def authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


@dataclass
class Certs:
    ca_file: Path
    server: ssl.SSLContext


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server)
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return Certs(path, server)


@dataclass
class Server:
    handler: Handler
    port: int
    controller: Controller


ServerFactory = Callable[..., Server]


@pytest.fixture
def smtp_server() -> Iterator[ServerFactory]:
    """Starts aiosmtpd servers on free ports (or ``port``, e.g. a relay's that was down until now):
    ``smtp_server(**SMTP_kwargs)``; stops them after the test."""
    started: list[Controller] = []

    def start(handler: Handler | None = None, port: int | None = None, **kwargs: Any) -> Server:
        handler = handler or Handler()
        port = port or free_port()
        kwargs.setdefault("auth_require_tls", False)
        kwargs.setdefault("authenticator", authenticator)
        kwargs.setdefault("decode_data", False)
        kwargs.setdefault("enable_SMTPUTF8", False)  # the Controller would turn it on
        controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        started.append(controller)
        return Server(handler, port, controller)

    yield start
    for controller in started:
        controller.stop()


def transport(port: int, name: str = "relay", **settings: Any) -> SmtpTransport:
    settings.setdefault("tls", "none")
    settings.setdefault("helo", "client.test")
    return SmtpTransport(
        SmtpSettings.model_validate({"host": "127.0.0.1", "port": port, **settings}),
        TransportContext(name=name),
    )


@pytest.fixture
async def started() -> AsyncIterator[Callable[[SmtpTransport], Awaitable[SmtpTransport]]]:
    """Starts transports for a test and stops them (closing pooled connections) after it."""
    running: list[SmtpTransport] = []

    async def start(t: SmtpTransport) -> SmtpTransport:
        await t.start()
        running.append(t)
        return t

    yield start
    for t in running:
        await t.stop()


CONTENT = (
    b"From: me@example.org\r\nTo: you@example.net\r\nBcc: hidden@example.net\r\n"
    b"Subject: hello\r\nMessage-ID: <1@example.org>\r\n\r\nline one\r\n.leading dot\r\nlast\r\n"
)


def message(
    *recipients: str, content: bytes = CONTENT, sender: str = "me@example.org"
) -> tuple[Message, list[Recipient]]:
    rcpts = [Recipient(i, a, "", "SMTP", RecipientKind.TO) for i, a in enumerate(recipients)]
    msg = Message(
        id="m1",
        folder_id="f",
        message_class="IPM.Note",
        flags=MessageFlag.UNSENT,
        submit_flags=SubmitFlag.LOCKED,
        priority=0,
        sender=sender,
        subject="hello",
        size=len(content),
        content=content,
        recipients=tuple(rcpts),
        created_at=0.0,
        client_submit_time=0.0,
        not_before=None,
        next_attempt=None,
        sentmail_folder=None,
        delete_after_submit=False,
        ndr_requested=True,
        dr_requested=False,
        lock_owner="test",
        lock_expiry=None,
    )
    return msg, rcpts


@dataclass
class Scripted:
    """A raw SMTP server that follows a script, for faults a real server will not make on demand."""

    port: int
    connections: int = 0
    lines: list[bytes] = field(default_factory=list)


@pytest.fixture
async def scripted_server() -> AsyncIterator[Callable[..., Awaitable[Scripted]]]:
    servers: list[asyncio.Server] = []

    async def start(on_line: Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]) -> Scripted:
        """``on_line`` answers each line; returning False closes the connection at once."""
        state = Scripted(0)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            state.connections += 1
            writer.write(b"220 scripted ESMTP\r\n")
            try:
                while line := await reader.readline():
                    state.lines.append(line)
                    if not await on_line(line, writer):
                        break
                    await writer.drain()
            except ConnectionError:
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        state.port = server.sockets[0].getsockname()[1]
        return state

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def sockets_to(port: int) -> int:
    """How many sockets this process holds open to 127.0.0.1:``port`` (the relay's, not the server's
    own: those have it as their local port), from /proc: what is really open, whatever the loop."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2] == f"0100007F:{port:04X}":
            inodes.add(f"socket:[{fields[9]}]")
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if _readlink(fd) in inodes)


def _readlink(path: Path) -> str:
    try:
        return str(path.readlink())
    except FileNotFoundError:  # closed since it was listed (the listing's own descriptor)
        return ""


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """An unclosed socket is reported by the test that leaked it, not by whichever test runs next."""
    yield
    gc.collect()


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every async test here runs on asyncio's loop and on uvloop's, which the daemon uses."""
    import uvloop

    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture
def postgres(dialect: str, request: pytest.FixtureRequest) -> str | None:
    """The test server's DSN when ``dialect`` is postgres (a session fixture, asked for only then)."""
    return request.getfixturevalue("postgres_dsn") if dialect == "postgres" else None


@pytest.fixture
async def store_section(postgres: str | None, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """The default store's section in the test's dialect (the budget is kept there)."""
    if postgres is None:
        yield {"provider": "sqlite"}
        return
    backend = PostgresBackend(postgres)
    options = await backend.create(tmp_path)
    yield {"provider": "postgres", **options}
    await backend.drop(options)
