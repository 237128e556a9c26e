"""A local HTTP endpoint (asyncio, h11) that records what a daemon POSTs and answers as a test scripts it,
and a real daemon relaying through aiosmtpd with ``[webhooks.app]`` pointed at it. The network tests run
on uvloop, as the daemon does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import h11
import pytest

from tests.maillog.conftest import certs, daemons, root, smtp_server
from tests.metrics.conftest import MetricsDaemon

__all__ = ["Post", "Receiver", "WebhookDaemon", "certs", "daemons", "receiver", "root", "smtp_server"]

SECRET = b"s3cret-for-tests"


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    import uvloop

    return {"uvloop": uvloop.new_event_loop}


@dataclass
class Post:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class Receiver:
    """Answers ``statuses`` in turn (then 200); while ``hold`` is set, takes requests and answers none."""

    port: int = 0
    posts: list[Post] = field(default_factory=list)  # every request, whatever it was answered
    taken: list[Post] = field(default_factory=list)  # those answered 2xx
    statuses: list[int] = field(default_factory=list)
    hold: bool = False
    close_after_answer: bool = False  # end each connection after one answer (no keep-alive, unannounced)
    connections: int = 0
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _handlers: set[asyncio.Task[Any]] = field(default_factory=set)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        try:
            while True:
                request = await self._request(conn, reader)
                if request is None:
                    return
                self.posts.append(request)
                self._wake()
                if self.hold:
                    await asyncio.Event().wait()  # never answered (the daemon is killed meanwhile)
                status = self.statuses.pop(0) if self.statuses else 200
                if 200 <= status < 300:
                    self.taken.append(request)
                    self._wake()
                writer.write(conn.send(h11.Response(status_code=status, headers=[("Content-Length", "2")])))
                writer.write(conn.send(h11.Data(data=b"ok")) + conn.send(h11.EndOfMessage()))
                await writer.drain()
                if self.close_after_answer:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._handlers.discard(task)

    async def close(self) -> None:
        """End every connection, kept-alive ones included (the daemon may still be running)."""
        for task in self._handlers:
            task.cancel()
        with anyio.fail_after(10):
            await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _request(self, conn: h11.Connection, reader: asyncio.StreamReader) -> Post | None:
        headers: dict[str, str] = {}
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Request):
                headers = {k.decode().lower(): v.decode() for k, v in event.headers}
                assert event.method == b"POST" and event.target == b"/hook"
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return Post(headers, body)
            elif isinstance(event, h11.ConnectionClosed):
                return None

    def _wake(self) -> None:
        self._arrived.set()
        self._arrived = asyncio.Event()

    async def until(self, done: Callable[[Receiver], bool]) -> None:
        with anyio.fail_after(30):
            while not done(self):
                await self._arrived.wait()

    def events(self) -> list[dict[str, Any]]:
        return [p.event for p in self.taken]


@contextlib.asynccontextmanager
async def receiving(tls: ssl.SSLContext | None = None) -> AsyncIterator[Receiver]:
    r = Receiver()
    server = await asyncio.start_server(r.serve, "127.0.0.1", 0, ssl=tls)
    r.port = server.sockets[0].getsockname()[1]
    try:
        yield r
    finally:
        server.close()
        await r.close()
        await server.wait_closed()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as r:
        yield r


class WebhookDaemon(MetricsDaemon):
    """A relaying daemon serving metrics, with ``[webhooks.app]`` (its secret in a file) at ``url``."""

    def __init__(
        self, root: Path, relay_port: int, url: str, *, webhook: str = "", more: str = "", level: str = "info"
    ) -> None:
        secret = root / "webhook.secret"
        secret.write_bytes(SECRET + b"\n")
        section = f'[webhooks.app]\nurl = "{url}"\nsecret_file = "{secret}"\n{webhook}\n'
        super().__init__(root, relay_port, more=f"{section}\n{more}", level=level)
