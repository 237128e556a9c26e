"""The control socket server: a thin I/O layer that moves lines between clients and the command table.

The socket is created with mode 0660 and every connection's peer credentials (SO_PEERCRED) are checked:
root, the daemon's own uid, the configured uids, and members of the configured groups (primary or
supplementary, read from /proc) may talk to it; anyone else gets a ``forbidden`` error and is hung up
on. A client that sends too fast is answered ``rate_limited``. A bad line never costs the connection,
let alone the daemon.
"""

from __future__ import annotations

import contextlib
import grp
import os
import socket
import struct
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import anyio
import structlog
from anyio.abc import SocketAttribute, SocketStream, TaskGroup, TaskStatus

from ..config import Config
from ..daemon import Daemon
from ..errors import ConfigError, SpoolerError
from ..fsutil import make_dirs_durably
from .commands import Connection, run_command
from .protocol import ProtocolError, Request, RequestReader, encode_error, encode_event, encode_result

__all__ = ["ControlServer", "peer_credentials"]

log = structlog.get_logger("spoolerd.control")

_PEERCRED = struct.Struct("3i")
_RECEIVE = 256 * 1024  # bytes read at a time: request lines are small, a submit's body may be large


def peer_credentials(stream: SocketStream) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix stream socket."""
    raw: socket.socket = stream.extra(SocketAttribute.raw_socket)
    pid, uid, gid = _PEERCRED.unpack(raw.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return pid, uid, gid


def _groups_of(pid: int, gid: int) -> set[int]:
    groups = {gid}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Groups:"):
                groups.update(int(g) for g in line.split()[1:])
    except OSError:
        pass  # the client is gone already; its primary group is all we know
    return groups


class _RateLimit:
    """A token bucket: ``rate`` requests a second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class ControlServer:
    def __init__(
        self,
        daemon: Daemon,
        path: Path,
        *,
        allowed_uids: Collection[int] = (),
        allowed_gids: Collection[int] = (),
        mode: int = 0o660,
        max_line: int | None = None,
        rate: float = 200.0,
        burst: float = 400.0,
        max_connections: int = 256,
    ) -> None:
        self.daemon = daemon
        self.path = path
        self.uids = {0, os.getuid(), *allowed_uids}
        self.gids = set(allowed_gids)
        self.socket_group = next(iter(allowed_gids), None)  # the first allowed group owns the socket
        self.mode = mode
        self.max_line = max_line
        self.rate, self.burst = rate, burst
        self.connections = 0
        self.max_connections = max_connections

    def reconfigure(self, config: Config) -> None:
        """A reload: who may connect and how fast (the socket path needs a restart)."""
        self.uids = {0, os.getuid(), *config.control.allowed_uids}
        self.gids = {
            grp.getgrnam(g).gr_gid if isinstance(g, str) else g for g in config.control.allowed_groups
        }
        self.rate, self.burst = config.control.rate, config.control.burst

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        if len(os.fsencode(self.path)) > 107:
            raise ConfigError(
                [f"control.socket: {self.path} is longer than a Unix socket path may be (107 bytes)"]
            )
        make_dirs_durably(str(self.path.parent))
        if self.path.is_socket():
            self.path.unlink()  # left by a daemon that died; the state lock says we are the only one
        listener = await anyio.create_unix_listener(self.path, mode=self.mode)
        if self.socket_group is not None:  # members of the allowed group must be able to open the socket
            try:
                os.chown(self.path, -1, self.socket_group)
            except PermissionError:
                log.warning(
                    "control socket left to the daemon's own group: it is not a member of the allowed group"
                    " (under systemd: SupplementaryGroups=), so that group's members cannot connect",
                    path=str(self.path),
                    gid=self.socket_group,
                )
        log.info("control socket listening", path=str(self.path))
        task_status.started()
        try:
            async with listener:
                await listener.serve(self._client)
        finally:
            self.path.unlink(missing_ok=True)

    def _authorised(self, stream: SocketStream) -> tuple[bool, int]:
        try:
            pid, uid, gid = peer_credentials(stream)
        except OSError:
            return False, -1
        return uid in self.uids or bool(self.gids & _groups_of(pid, gid)), uid

    async def _client(self, stream: SocketStream) -> None:
        """One connection. Nothing that happens on it may reach the listener: that would stop the daemon."""
        try:
            async with stream:
                allowed, uid = self._authorised(stream)
                if not allowed:
                    log.warning("control client refused", uid=uid)
                    await _send(
                        stream, encode_error(None, "forbidden", f"uid {uid} may not use the control socket")
                    )
                    return
                if self.connections >= self.max_connections:
                    await _send(stream, encode_error(None, "busy", "too many control connections; try again"))
                    return
                self.connections += 1
                try:
                    await _Session(self, stream, uid).run()
                finally:
                    self.connections -= 1
        except* (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
            pass  # the client went away mid-answer
        except* Exception:
            log.exception("control connection failed")


class _Session:
    """One client connection: requests answered in order; a ``subscribe`` stream runs beside them."""

    def __init__(self, server: ControlServer, stream: SocketStream, uid: int) -> None:
        self.server = server
        self.stream = stream
        self.uid = uid
        body_limit = server.daemon.config.spooler.message_size_limit  # a submit's message, as a body
        self.reader = (
            RequestReader(body_limit=body_limit)
            if server.max_line is None
            else RequestReader(server.max_line, body_limit)
        )
        self.limit = _RateLimit(server.rate, server.burst)
        self.lock = anyio.Lock()
        self.closed = anyio.Event()

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.read, tg)
            await self.closed.wait()
            tg.cancel_scope.cancel()

    async def send_line(self, line: bytes) -> None:
        """Write one line; a client that went away just ends the session."""
        async with self.lock:
            try:
                await self.stream.send(line)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
                self.closed.set()

    async def read(self, tg: TaskGroup) -> None:
        try:
            while True:
                try:
                    data = await self.stream.receive(_RECEIVE)
                except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                    return
                for item in self.reader.feed(data):
                    if isinstance(item, ProtocolError):
                        await self.send_line(encode_error(item.request_id, item.code, item.message))
                    else:
                        await self.answer(item, tg)
        finally:
            self.closed.set()

    async def answer(self, request: Request, tg: TaskGroup) -> None:
        if not self.limit.allow():
            await self.send_line(encode_error(request.id, "rate_limited", "too many requests; slow down"))
            return

        async def send_event(event: dict[str, Any]) -> None:
            await self.send_line(encode_event(request.id, event))

        async def run() -> None:
            conn = Connection(self.uid, send_event, self.closed, request.body)
            try:
                result = await run_command(self.server.daemon, request.cmd, request.args, conn)
            except SpoolerError as exc:
                await self.send_line(encode_error(request.id, exc.code, str(exc)))
            except Exception as exc:  # a bug must cost one answer, not the daemon
                log.exception("control command failed", cmd=request.cmd)
                await self.send_line(
                    encode_error(request.id, "internal_error", f"{type(exc).__name__}: {exc}")
                )
            else:
                await self.send_line(encode_result(request.id, result))

        if request.cmd == "subscribe":
            tg.start_soon(run)  # a stream: keep reading this connection (its hang-up ends the stream)
        else:
            await run()


async def _send(stream: SocketStream, line: bytes) -> None:
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
        await stream.send(line)
