"""Everything that reaches into aioimaplib's internals, in one place, for the tested range of versions
(the pin in pyproject.toml). ``check()`` names the first internal that is gone or changed: the transport
calls it at start, and tests/imap/test_adapter.py fails on it, so an upgrade breaks loudly, not at 3 a.m.

What is used and why:

- ``IMAP4.create_client`` is overridden to open the connection ourselves (STARTTLS, which aioimaplib
  lacks) and ``IMAP4._client_task`` is awaited as the connection attempt;
- ``IMAP4ClientProtocol._continuation`` and ``pending_sync_command``: a refused XOAUTH2 sends its error as
  a challenge that must be answered with an empty line (RFC 7628 3.2.3), which aioimaplib never does;
- ``IMAP4ClientProtocol.wait(state)``: the greeting is awaited on the state, because aioimaplib's own
  ``wait_hello_from_server`` holds a lock across its CAPABILITY and cannot be cancelled;
- ``IMAP4ClientProtocol.capability()``: capabilities asked again after AUTHENTICATE;
- ``IMAP4.tasks``, ``IMAP4ClientProtocol.tasks`` and ``.transport``: closing cancels aioimaplib's helper
  tasks (greeting, IDLE), which would otherwise wait for ever;
- ``IMAP4.timeout``: each command's deadline, set once logged in;
- ``IMAP4.idle_start`` raising ``Abort`` with no IDLE pending: the server refused IDLE (a NO or BAD), the
  connection itself is fine; ``IMAP4.has_pending_idle`` tells.
"""

from __future__ import annotations

import asyncio
import inspect
import ssl
from collections.abc import Callable
from typing import Any, cast

import aioimaplib
from aioimaplib.aioimaplib import IMAP4ClientProtocol

from spoolerd.errors import TransportError

__all__ = ["Client", "IdleRefused", "InternalsChanged", "check", "close", "connection", "greeting"]


class InternalsChanged(TransportError):
    """The installed aioimaplib is not one this adapter was written for."""

    code = "imap_library_changed"


class IdleRefused(Exception):
    """The server answered IDLE with NO or BAD."""


def _fail(what: str) -> InternalsChanged:
    return InternalsChanged(
        f"aioimaplib {_version()}: {what}; the IMAP transport relies on it (transports/imap/adapter.py), "
        "install a version in the range pinned in pyproject.toml"
    )


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("aioimaplib")
    except Exception:  # not installed as a distribution: the check still names the attribute
        return "(unknown version)"


def _parameters(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def check() -> None:
    """Raise ``InternalsChanged`` naming the first internal of aioimaplib that is not as relied on."""
    imap4, protocol_class = aioimaplib.IMAP4, IMAP4ClientProtocol
    for owner, name in [
        (protocol_class, "_continuation"),
        (protocol_class, "wait"),
        (protocol_class, "capability"),
        (protocol_class, "connection_made"),
        (protocol_class, "data_received"),
        (imap4, "create_client"),
        (imap4, "idle_start"),
        (imap4, "has_pending_idle"),
    ]:
        if not callable(getattr(owner, name, None)):
            raise _fail(f"{owner.__name__}.{name} is gone")
    if _parameters(imap4.create_client) != ["self", "host", "port", "loop", "conn_lost_cb", "ssl_context"]:
        raise _fail("IMAP4.create_client(host, port, loop, conn_lost_cb, ssl_context) changed")
    if _parameters(imap4.__init__)[:7] != [
        "self", "host", "port", "loop", "timeout", "conn_lost_cb", "ssl_context"
    ]:  # fmt: skip
        raise _fail("IMAP4(host, port, loop, timeout, conn_lost_cb, ssl_context) changed")
    if "_client_task" not in getattr(imap4, "__annotations__", {}):
        raise _fail("IMAP4._client_task is gone")
    if _parameters(protocol_class.wait) != ["self", "state_regexp"]:
        raise _fail("IMAP4ClientProtocol.wait(state_regexp) changed")
    probe = protocol_class(None, None)
    for name in ("pending_sync_command", "tasks", "transport"):
        if not hasattr(probe, name):
            raise _fail(f"IMAP4ClientProtocol.{name} is gone")
    if not isinstance(probe.tasks, set):
        raise _fail("IMAP4ClientProtocol.tasks is no longer a set")

    class _Bare(aioimaplib.IMAP4):  # type: ignore[misc]
        def create_client(self, *args: Any) -> None:
            pass

    client = _Bare("127.0.0.1", 1, None, 7.0)
    if not isinstance(getattr(client, "tasks", None), set):
        raise _fail("IMAP4.tasks is gone")
    if getattr(client, "timeout", None) != 7.0:
        raise _fail("IMAP4.timeout is gone")


class _Lines(asyncio.Protocol):
    """Reads the greeting and the STARTTLS reply before TLS (then the socket goes to aioimaplib)."""

    def __init__(self) -> None:
        self.buffer = b""
        self.lines: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio's (an isinstance check fails on them)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            self.lines.put_nowait(line)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lines.put_nowait(None)

    async def line(self) -> bytes:
        line = await self.lines.get()
        if line is None:
            raise ConnectionResetError("the server closed the connection")
        return line


class StartTlsRefused(Exception):
    """The greeting was not OK, or the server did not take STARTTLS; the text says which."""


async def _starttls(lines: _Lines) -> bytes:
    """Read the greeting, ask for STARTTLS and read the answer; the greeting is returned to be replayed.
    Untagged data before the answer (a CAPABILITY) means nothing before TLS."""
    greeting = await lines.line()
    if not greeting.startswith(b"* OK"):
        raise StartTlsRefused(f"greeting {greeting[:200]!r}")
    assert lines.transport is not None
    lines.transport.write(b"S0 STARTTLS\r\n")
    while not (reply := await lines.line()).startswith(b"S0 "):
        pass
    if not reply.startswith(b"S0 OK"):
        raise StartTlsRefused("the server does not offer STARTTLS (tls = starttls requires it)")
    return greeting


class _Protocol(IMAP4ClientProtocol):  # type: ignore[misc]
    def _continuation(self, line: bytes) -> None:
        command = self.pending_sync_command
        if command is not None and command.name == "AUTHENTICATE":
            # XOAUTH2 refused: the server sends its error as a challenge and waits for an empty
            # answer before its tagged NO (RFC 7628 3.2.3); aioimaplib would wait for ever
            self.transport.write(b"\r\n")
            return
        super()._continuation(line)


class Client(aioimaplib.IMAP4):  # type: ignore[misc]
    """aioimaplib's client, connected by us: plain, implicit TLS, or STARTTLS then TLS."""

    def __init__(
        self,
        host: str,
        port: int,
        lost: Callable[[Exception | None], None],
        *,
        limit: float,
        context: ssl.SSLContext | None,
        starttls: bool,
    ) -> None:
        self._starttls = starttls
        super().__init__(host, port, None, limit, lost, context)

    def create_client(
        self,
        host: str,
        port: int,
        loop: asyncio.AbstractEventLoop | None,
        conn_lost_cb: Callable[[Exception | None], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        running = loop if loop is not None else asyncio.get_running_loop()
        self.protocol = _Protocol(running, conn_lost_cb)
        if self._starttls:
            assert ssl_context is not None
            self._client_task = running.create_task(self._upgrade(running, host, port, ssl_context))
        else:
            self._client_task = running.create_task(
                running.create_connection(lambda: self.protocol, host, port, ssl=ssl_context)
            )

    async def _upgrade(
        self, loop: asyncio.AbstractEventLoop, host: str, port: int, context: ssl.SSLContext
    ) -> tuple[asyncio.BaseTransport, IMAP4ClientProtocol]:
        transport, lines = await loop.create_connection(_Lines, host, port)
        try:
            greeting = await _starttls(lines)
            tls = await loop.start_tls(transport, lines, context, server_hostname=host)
        except BaseException:
            transport.close()
            raise
        if tls is None:
            raise ConnectionResetError("the connection closed during the TLS handshake")
        tls.set_protocol(self.protocol)
        self.protocol.connection_made(tls)
        self.protocol.data_received(greeting + b"\r\n")  # aioimaplib greets and asks CAPABILITY, in TLS
        return tls, self.protocol


def connection(client: Client) -> asyncio.Future[Any]:
    """The connection attempt (TCP, TLS, STARTTLS), to be awaited."""
    return cast("asyncio.Future[Any]", client._client_task)


async def greeting(client: Client) -> None:
    """Until the greeting (and aioimaplib's CAPABILITY after it) is in; cancellable, unlike
    ``wait_hello_from_server``."""
    await client.protocol.wait("AUTH|NONAUTH")


async def capabilities(client: Client) -> None:
    """Ask CAPABILITY again (AUTHENTICATE's answer may not carry them)."""
    await client.protocol.capability()


def set_command_timeout(client: Client, seconds: float) -> None:
    client.timeout = seconds


async def idle_start(client: Client, seconds: float) -> asyncio.Future[Any]:
    """IDLE begun (ended by aioimaplib after ``seconds``): the future of the IDLE command.
    ``IdleRefused`` if the server said NO or BAD."""
    try:
        return cast("asyncio.Future[Any]", await client.idle_start(timeout=seconds))
    except aioimaplib.Abort as exc:
        if not client.has_pending_idle():
            raise IdleRefused(str(exc)) from exc
        raise


def transport(client: Client) -> asyncio.BaseTransport | None:
    return cast("asyncio.BaseTransport | None", getattr(client.protocol, "transport", None))


def close(client: Client) -> None:
    """Close the socket and cancel aioimaplib's helper tasks (greeting, IDLE), which would wait for ever."""
    socket = transport(client)
    if socket is not None:
        socket.close()
    for task in [*client.protocol.tasks, *client.tasks]:
        task.cancel()
