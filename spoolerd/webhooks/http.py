"""A small HTTP/1.1 client for one endpoint: POST a body, get the status code. h11 keeps the protocol
(framing, keep-alive, header checks: CR/LF never reaches the wire); this module moves bytes over one
kept-alive connection, http or https (the system's trusted CAs, hostname checked), with one deadline
over the whole exchange. Everything that goes wrong is a ``WebhookError``."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from urllib.parse import urlsplit

import anyio
import h11
from anyio.abc import ByteStream

from .. import __version__
from ..errors import WebhookError

__all__ = ["HttpPoster"]

_READ = 65536


class HttpPoster:
    """POSTs to one URL, one request at a time, reusing the connection while the server keeps it."""

    def __init__(self, url: str, timeout: float, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        self.url = url
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.tls else 80)
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.authority = parts.netloc
        self.timeout = timeout
        self.ssl_context = ssl_context or (ssl.create_default_context() if self.tls else None)
        self._stream: ByteStream | None = None
        self._conn: h11.Connection | None = None

    async def post(self, body: bytes, headers: Sequence[tuple[str, str]]) -> int:
        """The status code of the final answer. A kept-alive connection the server has closed meanwhile
        is replaced once, within the same deadline."""
        try:
            with anyio.fail_after(self.timeout):
                reused = self._stream is not None
                try:
                    return await self._exchange(body, headers)
                except (
                    OSError,
                    anyio.EndOfStream,
                    anyio.BrokenResourceError,
                    h11.ProtocolError,
                    WebhookError,
                ):
                    if not reused:
                        raise
                    await self.close()
                    return await self._exchange(body, headers)
        except WebhookError:
            await self.close()
            raise
        except TimeoutError as exc:
            await self.close()
            raise WebhookError(f"{self.url}: no answer within {self.timeout:g} s") from exc
        except (OSError, anyio.EndOfStream, anyio.BrokenResourceError, h11.ProtocolError) as exc:
            await self.close()
            raise WebhookError(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            await self.close()
            raise

    async def _exchange(self, body: bytes, headers: Sequence[tuple[str, str]]) -> int:
        stream, conn = await self._connection()
        request = h11.Request(
            method="POST",
            target=self.target,
            headers=[
                ("Host", self.authority),
                ("User-Agent", f"spoolerd/{__version__}"),
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                *headers,
            ],
        )
        await stream.send(conn.send(request) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
        status = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await stream.receive(_READ)
                except anyio.EndOfStream:
                    data = b""
                conn.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise WebhookError(f"{self.url}: the server closed the connection without an answer")
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            await self.close()
        return status

    async def _connection(self) -> tuple[ByteStream, h11.Connection]:
        if self._stream is None or self._conn is None:
            try:
                if self.ssl_context is not None:
                    self._stream = await anyio.connect_tcp(
                        self.host, self.port, ssl_context=self.ssl_context, tls_standard_compatible=False
                    )
                else:
                    self._stream = await anyio.connect_tcp(self.host, self.port)
            except OSError as exc:  # anyio's own words hide the reason: "all connection attempts failed"
                raise WebhookError(f"{self.url}: cannot connect: {exc.__cause__ or exc}") from exc
            self._conn = h11.Connection(h11.CLIENT)
        return self._stream, self._conn

    async def close(self) -> None:
        stream, self._stream, self._conn = self._stream, None, None
        if stream is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await stream.aclose()
