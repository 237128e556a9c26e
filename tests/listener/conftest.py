"""A real daemon process with SMTP listeners, the clients' helpers, and a trustme CA.

The daemon runs on uvloop (its default); the tests' own loop is parametrised over asyncio and uvloop.
Deliveries are watched through the control socket (``inbox``) and through the ``test-scripted``
transport's log file (one fsynced line per delivered recipient), never by sleeping.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import smtplib
import ssl
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme

from spoolerd.listener.credentials import hash_password
from tests.control.conftest import Client
from tests.peers.ports import free_port

USER, PASSWORD = "alice", "correct horse"


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every async test here runs on asyncio's loop and on uvloop's, which the daemon uses."""
    import uvloop

    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


class Certs:
    def __init__(self, root: Path) -> None:
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("localhost", "127.0.0.1")
        self.cert = root / "cert.pem"
        self.key = root / "key.pem"
        cert.cert_chain_pems[0].write_to_path(str(self.cert))
        for extra in cert.cert_chain_pems[1:]:
            with self.cert.open("ab") as fh:
                fh.write(extra.bytes())
        cert.private_key_pem.write_to_path(str(self.key))

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


class ListenerDaemon:
    """``spoolerd run`` with one listener ``main`` on a free port (``listener`` adds its keys)."""

    def __init__(
        self, root: Path, listener: str = "", extra: str = "", host: str = "127.0.0.1", spooler: str = ""
    ) -> None:
        self.root = root
        self.spooler = spooler
        self.host = host
        self.port = free_port()
        self.listener = listener
        self.extra = extra
        self.socket = root / "control.sock"
        self.delivered_log = root / "delivered.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None
        self.clients: list[Client] = []
        self.certs = Certs(root)
        self.credentials = root / "users"
        self.credentials.write_text(f"# test users\n{USER}:{hash_password(PASSWORD)}\n")

    def write_config(self) -> Path:
        cfg = self.root / "spoolerd.toml"
        cfg.write_text(
            f"""
[spooler]
state_dir = "{self.root / "state"}"
{self.spooler}
[control]
socket = "{self.socket}"
[log]
format = "json"
[stores.local]
provider = "sqlite"
addresses = ["@localhost"]
[transports.loopback]
provider = "loopback"
[transports.remote]
provider = "test-scripted"
perm_fail = ["nobody@remote.test"]
log_file = "{self.delivered_log}"
[listeners.main]
address = "{self.host}:{self.port}"
{self.listener}
{self.extra}
"""
        )
        return cfg

    async def start(self) -> None:
        cfg = self.write_config()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "spoolerd.cli", "run", "--config", str(cfg), stderr=subprocess.PIPE
        )
        self.reader = asyncio.ensure_future(self._read(self.proc))
        await self.wait_log(lambda e: e.get("event") == "spooler running", after=len(self.lines))

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                self.lines.append({"event": "raw", "text": line.decode(errors="replace")})
            self.changed.set()
        self.lines.append({"event": "exited"})
        self.changed.set()

    async def wait_log(
        self, match: Callable[[dict[str, Any]], bool], *, after: int = 0, within: float = 30
    ) -> dict[str, Any]:
        with anyio.fail_after(within):
            seen = after
            while True:
                for line in self.lines[seen:]:
                    if match(line):
                        return line
                    assert line.get("event") != "exited", self.lines[-30:]
                seen = len(self.lines)
                self.changed.clear()
                await self.changed.wait()

    def logged(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == event]

    async def client(self) -> Client:
        client = Client(await anyio.connect_unix(self.socket))
        self.clients.append(client)
        return client

    async def inbox(self, count: int, within: float = 30) -> list[dict[str, Any]]:
        """The local store's Inbox once it holds ``count`` messages (woken by new_mail events)."""
        watcher = await self.client()
        ctl = await self.client()
        await watcher.stream.send(b'{"id": 1, "cmd": "subscribe", "args": {}}\n')
        with anyio.fail_after(within):
            assert (await watcher.line())["event"]["type"] == "subscribed"
            while len(rows := await ctl.ok("list", folder="inbox")) < count:
                await watcher.line()
        return rows  # type: ignore[no-any-return]

    async def drained(self, within: float = 30) -> None:
        """Return once the outgoing queue is empty (woken by queue events)."""
        watcher = await self.client()
        ctl = await self.client()
        await watcher.stream.send(b'{"id": 1, "cmd": "subscribe", "args": {}}\n')
        with anyio.fail_after(within):
            assert (await watcher.line())["event"]["type"] == "subscribed"
            while await ctl.ok("queue"):
                await watcher.line()

    async def fetch(self, message_id: str) -> bytes:
        import base64

        ctl = await self.client()
        return base64.b64decode((await ctl.ok("fetch", id=message_id))["content"])

    async def status_row(self) -> dict[str, Any]:
        ctl = await self.client()
        rows = await ctl.ok("status")
        return next(r for r in rows if r["resource_type"] == "listener" and r["name"] == "main")

    async def close_clients(self) -> None:
        for client in self.clients:
            await client.stream.aclose()
        self.clients.clear()

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        await self.close_clients()
        self.proc.send_signal(sig)
        with anyio.fail_after(40):
            code = await self.proc.wait()
            if self.reader is not None:
                await self.reader
        return code

    def smtp(self, **kwargs: Any) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.port, timeout=30, **kwargs)


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="spl"))  # short: a socket path has at most 107 bytes
    os.chmod(path, 0o755)
    yield path


@pytest.fixture
async def make_daemon(root: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[ListenerDaemon] = []

    async def make(
        listener: str = "", extra: str = "", host: str = "127.0.0.1", spooler: str = ""
    ) -> ListenerDaemon:
        d = ListenerDaemon(root, listener, extra, host, spooler)
        await d.start()
        started.append(d)
        return d

    yield make
    for d in started:
        if d.proc is not None and d.proc.returncode is None:
            assert await d.stop() == 0


@pytest.fixture
async def daemon(make_daemon: Callable[..., Any]) -> ListenerDaemon:
    return await make_daemon()  # type: ignore[no-any-return]


def message(subject: str = "hello", to: str = "bob@localhost", body: str = "a line\r\n") -> bytes:
    return (
        f"From: app@example.com\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@example.com>\r\n\r\n{body}"
    ).encode()


async def in_thread(func: Callable[..., Any], *args: Any) -> Any:
    """A blocking client (smtplib, swaks) off the test's loop, so the daemon's log keeps being read."""
    return await anyio.to_thread.run_sync(func, *args)


class Raw:
    """A raw SMTP client for what smtplib will not send (bare LF, NUL, CR in a command, half a DATA)."""

    def __init__(self, port: int, source: str | None = None, timeout: float = 30) -> None:
        import socket

        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout, source_address=(source, 0) if source else None
        )
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def reply(self) -> str:
        out = []
        while True:
            line = self.file.readline().decode()
            out.append(line.rstrip("\r\n"))
            if len(line) < 4 or line[3] != "-":
                return "\n".join(out)

    def cmd(self, line: str | bytes) -> str:
        self.send(line if isinstance(line, bytes) else line.encode())
        self.send(b"\r\n")
        return self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sendmail(d: ListenerDaemon, sender: str, recipients: list[str], content: bytes) -> dict[str, Any]:
    """smtplib's whole transaction; the refused recipients (empty when all were accepted)."""
    with d.smtp() as s:
        return s.sendmail(sender, recipients, content)  # type: ignore[no-any-return]
