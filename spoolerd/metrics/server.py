"""``[metrics] address``: Prometheus text at ``http://ADDRESS/metrics``, served by the daemon's own loop.

A scrape is one HTTP/1.x request on a connection that is closed after the answer: the request head is
read within ``REQUEST_TIMEOUT`` (8 KiB at most), the answer written within ``WRITE_TIMEOUT``, and at most
``MAX_CONNECTIONS`` scrapes are answered at once (more are closed at once). No thread, no framework: an
``asyncio`` server, so it runs on uvloop like the rest. ``GET`` and ``HEAD`` of ``/metrics`` are answered;
any other path is 404, any other method 405.
"""

from __future__ import annotations

import asyncio

import anyio
import structlog
from anyio.abc import TaskStatus
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..errors import MetricsUnavailable
from ..listener_config import split_address
from .collect import DaemonMetrics, MetricsHost

__all__ = ["MetricsServer"]

log = structlog.get_logger("spoolerd.metrics")

REQUEST_TIMEOUT = 10.0
WRITE_TIMEOUT = 10.0
MAX_HEAD = 8192
MAX_CONNECTIONS = 16
PATH = "/metrics"


class MetricsServer:
    def __init__(self, daemon: MetricsHost, address: str) -> None:
        self.address = address
        self.metrics = DaemonMetrics(daemon)
        self._open = 0
        self._server: asyncio.Server | None = None
        self.scrapes = 0

    async def open(self) -> None:
        """Listen (before the daemon's tasks start, so a taken address is a plain error at start)."""
        host, port = split_address(self.address)
        try:
            self._server = await asyncio.start_server(
                self._client, host, port, limit=MAX_HEAD, reuse_address=True
            )
        except OSError as exc:
            raise MetricsUnavailable(f"metrics.address: cannot listen on {self.address}: {exc}") from exc

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Follow the daemon and answer scrapes until cancelled (``open`` first)."""
        self.metrics.start()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.metrics.census.run)
                log.info("metrics served", address=self.address, path=PATH)
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self.metrics.stop()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= MAX_CONNECTIONS:
            writer.close()
            return
        self._open += 1
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            status, body = self._answer(head)
            head_only = head.startswith(b"HEAD ")
            writer.write(_response(status, body, head_only))
            async with asyncio.timeout(WRITE_TIMEOUT):
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # a client that says nothing, too much, or hangs up: closed without an answer
        finally:
            self._open -= 1
            writer.close()

    def _answer(self, head: bytes) -> tuple[str, bytes]:
        method, _, rest = head.partition(b" ")
        target = rest.partition(b" ")[0].partition(b"?")[0]
        if method not in (b"GET", b"HEAD"):
            return "405 Method Not Allowed", b""
        if target != PATH.encode():
            return "404 Not Found", b"metrics are at /metrics\n"
        self.scrapes += 1
        return "200 OK", generate_latest(self.metrics.registry)


def _response(status: str, body: bytes, head_only: bool) -> bytes:
    content_type = CONTENT_TYPE_LATEST if status.startswith("200") else "text/plain; charset=utf-8"
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + (b"" if head_only else body)
