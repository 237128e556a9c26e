"""The control socket server: a thin I/O layer that moves lines between clients and the command table.

The socket is created with mode 0660 and every connection's peer credentials (SO_PEERCRED) are checked:
root, the daemon's own uid, the configured uids, and members of the configured groups (primary or
supplementary, as they were when the client connected: SO_PEERGROUPS) may talk to it; anyone else gets
a ``forbidden`` error and is hung up on. A client that sends too fast is answered ``rate_limited``. A
bad line never costs the connection, let alone the daemon.

No client can lock out the others: a connection that sends no request for ``idle_timeout`` is closed
(``idle_timeout``; a ``subscribe`` stream or a running command is not idle); a uid holds at most
``max_connections_per_uid`` connections and all together at most ``max_connections``: a new one over
either closes the oldest idle connection of that uid (of the busiest uid), which is told
``connection_limit``, and is refused ``busy`` only when none is idle. What a connection makes the daemon
hold (its partial line, answers and events it does not read) is bounded by ``max_buffer``, and all of
them together (submit bodies too) by ``max_buffer_total``: the connection over its own bound, or over
the total the ones that hold the most, are told ``buffer_full`` and hung up on.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog
from anyio.abc import SocketAttribute, SocketStream, TaskGroup, TaskStatus

from ..config import Config
from ..errors import ConfigError, SpoolerError
from ..fsutil import make_dirs_durably
from ..host import Host
from .access import ControlAccess
from .commands import Connection, run_command
from .peer import peer_credentials, peer_groups
from .protocol import (
    MAX_LINE,
    ProtocolError,
    Request,
    RequestReader,
    encode_error,
    encode_event,
    encode_result,
)
from .results import ControlEvent

__all__ = ["ControlServer"]

log = structlog.get_logger("spoolerd.control")

_RECEIVE = 256 * 1024  # bytes read at a time of a submit's body, which may be large
_RECEIVE_LINES = 64 * 1024  # and of request lines: a chunk of tiny requests is parsed at once
_FAREWELL = 1.0  # seconds a hung-up client is given to take its last line


@dataclass(frozen=True, slots=True)
class _Peer:
    """A control client as it connected: whether it is let in, its uid and its groups."""

    allowed: bool
    uid: int
    groups: frozenset[int]


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
        daemon: Host,
        path: Path,
        *,
        mode: int = 0o660,
        max_line: int | None = None,
        rate: float = 200.0,
        burst: float = 400.0,
    ) -> None:
        self.daemon = daemon
        self.path = path
        self.access = ControlAccess.of(daemon.config.control)
        self.socket_group = self.access.socket_group  # fixed at start, like the path
        self.mode = mode
        self.max_line = max_line
        self.rate, self.burst = rate, burst
        self.sessions: dict[int, list[_Session]] = {}  # by uid, oldest first
        self.buffered = 0  # bytes held by every connection together
        self._limits(daemon.config)

    def _limits(self, config: Config) -> None:
        control = config.control
        self.idle_timeout = control.idle_timeout
        self.max_connections = control.max_connections
        self.max_per_uid = control.max_connections_per_uid
        self.max_buffer = control.max_buffer
        # one message of the largest size is always allowed
        self.max_buffer_total = max(
            control.max_buffer_total, config.spooler.message_size_limit + control.max_buffer
        )

    def reconfigure(self, config: Config) -> None:
        """A reload: who may connect, for what, and how fast (the socket's path and group need a restart).
        A connection open now is held to it too (``_Session.recheck``)."""
        self.access = ControlAccess.of(config.control)
        self.rate, self.burst = config.control.rate, config.control.burst
        self._limits(config)
        for sessions in list(self.sessions.values()):
            for session in list(sessions):
                session.recheck()

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

    def _authorised(self, stream: SocketStream) -> _Peer:
        """Who the peer is, and whether it is let in."""
        try:
            pid, uid, gid = peer_credentials(stream)
        except OSError:
            return _Peer(False, -1, frozenset())
        groups = frozenset(peer_groups(stream.extra(SocketAttribute.raw_socket), pid, gid))
        return _Peer(self.access.admits(uid, groups), uid, groups)

    async def _client(self, stream: SocketStream) -> None:
        """One connection. Nothing that happens on it may reach the listener: that would stop the daemon."""
        try:
            async with stream:
                peer = self._authorised(stream)
                uid = peer.uid
                if not peer.allowed:
                    log.warning("control client refused", uid=uid)
                    await _send(
                        stream, encode_error(None, "forbidden", f"uid {uid} may not use the control socket")
                    )
                    return
                if not self._make_room(uid):
                    await _send(stream, encode_error(None, "busy", "too many control connections; try again"))
                    return
                session = _Session(self, stream, uid, peer.groups)
                self.sessions.setdefault(uid, []).append(session)
                try:
                    await session.run()
                finally:
                    self.sessions[uid].remove(session)
                    if not self.sessions[uid]:
                        del self.sessions[uid]
                    self.buffered -= session.held
        except* (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
            pass  # the client went away mid-answer
        except* Exception:
            log.exception("control connection failed")

    def _make_room(self, uid: int) -> bool:
        """Room for one more connection of ``uid``: an idle one of that uid (over its cap) or of the busiest
        uid (over the total) is closed for it; False when every one in the way is busy."""
        live = {u: [s for s in ss if not s.closed.is_set()] for u, ss in self.sessions.items()}
        mine = live.get(uid, [])
        if len(mine) >= self.max_per_uid:
            return _close_oldest_idle(mine, f"uid {uid} has {len(mine)} connections, the most allowed")
        if sum(map(len, live.values())) >= self.max_connections:
            busiest = max(live.values(), key=len)
            return _close_oldest_idle(busiest, f"{self.max_connections} control connections are open")
        return True

    def relieve(self, grower: _Session) -> None:
        """Over ``max_buffer_total``: hang up on the connections that hold the most (``grower`` first
        among equals) until the rest fit, so that a few greedy ones cannot lock out a new one."""
        while self.buffered > self.max_buffer_total:
            holders = [s for ss in self.sessions.values() for s in ss if s.held and not s.closed.is_set()]
            if not holders:
                return
            largest = max(holders, key=lambda s: (s.held, s is grower))
            largest.hang_up(
                "buffer_full",
                f"the control connections hold more than {self.max_buffer_total} bytes together,"
                f" {largest.held} of them for this one",
            )


def _close_oldest_idle(sessions: list[_Session], why: str) -> bool:
    idle = [s for s in sessions if not s.active]
    if not idle:
        return False
    oldest = min(idle, key=lambda s: (s.reader.buffered > 0, s.since))  # waiting, not mid-request, first
    oldest.hang_up("connection_limit", f"{why}: this idle one is closed for a new one")
    return True


class _Session:
    """One client connection: requests answered in order; a ``subscribe`` stream runs beside them."""

    def __init__(self, server: ControlServer, stream: SocketStream, uid: int, groups: frozenset[int]) -> None:
        self.server = server
        self.stream = stream
        self.uid = uid
        self.groups = groups  # as they were when it connected (``peer_groups``)
        self.admin = server.access.administers(uid, groups)
        self.commands = 0  # commands running now (not streams): a hang-up waits for their answers
        self.revoked: str | None = None  # why it is hung up on once they are answered
        body_limit = server.daemon.config.spooler.message_size_limit  # a submit's message, as a body
        line_limit = min(server.max_line or MAX_LINE, server.max_buffer)
        self.reader = RequestReader(line_limit, body_limit)
        self.limit = _RateLimit(server.rate, server.burst)
        self.lock = anyio.Lock()
        self.closed = anyio.Event()
        self.active = 0  # commands running and streams open: the connection is not idle
        self.since = time.monotonic()  # its last request (or its start)
        self.backlog = 0  # bytes of answers and events handed to send_line, not yet written
        self.held = 0  # what it counts in the server's total
        self.farewell: bytes | None = None  # the error line it is hung up with

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.read, tg)
            await self.closed.wait()
            tg.cancel_scope.cancel()
        if self.farewell is not None:
            with anyio.move_on_after(_FAREWELL):  # a client that reads nothing does not hold us up
                await _send(self.stream, self.farewell)

    def recheck(self) -> None:
        """A reload changed who may do what: a connection it took the right to connect from, or an
        administrator's it took that right from, is hung up on (a ``subscribe`` stream would go on
        sending otherwise); one it gave more to has them from its next request."""
        access = self.server.access
        admin = access.administers(self.uid, self.groups)
        if not access.admits(self.uid, self.groups) or (self.admin and not admin):
            self.revoked = f"uid {self.uid} lost its rights on the control socket (a reload)"
            if not self.commands:  # else once they are answered (the reload that did it, say)
                self.hang_up("forbidden", self.revoked)
        else:
            self.revoked = None  # (given back by a second reload before the first's command ended)
        self.admin = admin

    def hang_up(self, code: str, message: str) -> None:
        if self.closed.is_set():
            return
        log.info("control client hung up", uid=self.uid, code=code, reason=message)
        self.farewell = encode_error(None, code, message)
        self.closed.set()
        self.server.buffered -= self.held
        self.held = 0

    def account(self) -> None:
        """Count what this connection holds in the server's total; over it, the largest holder goes."""
        if self.closed.is_set():
            return  # what it held is let go with it
        held = self.reader.buffered + self.backlog
        grew = held > self.held
        self.server.buffered += held - self.held
        self.held = held
        if grew:
            self.server.relieve(self)

    async def send_line(self, line: bytes) -> None:
        """Write one line; a client that went away just ends the session, and one that leaves more than
        ``max_buffer`` bytes of answers and events unread is hung up on (one line alone may be larger)."""
        if self.backlog and self.backlog + len(line) > self.server.max_buffer:
            self.hang_up("buffer_full", f"more than {self.server.max_buffer} bytes of answers left unread")
            return
        self.backlog += len(line)
        self.account()
        try:
            async with self.lock:
                await self.stream.send(line)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
            self.closed.set()
        finally:
            self.backlog -= len(line)
            self.account()

    async def read(self, tg: TaskGroup) -> None:
        try:
            while not self.closed.is_set():
                idle_timeout = math.inf if self.active else self.server.idle_timeout
                with anyio.move_on_after(idle_timeout) as waiting:
                    try:
                        data = await self.stream.receive(
                            _RECEIVE if self.reader.reading_body else _RECEIVE_LINES
                        )
                    except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                        return
                if waiting.cancelled_caught:
                    self.hang_up("idle_timeout", f"no request for {idle_timeout:g} s")
                    return
                self.since = time.monotonic()
                items = self.reader.feed(data)
                self.account()
                for item in items:
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

        async def send_event(event: ControlEvent) -> None:
            await self.send_line(encode_event(request.id, event))

        async def run() -> None:
            conn = Connection(self.uid, send_event, self.closed, request.body, admin=self.admin)
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

        async def running() -> None:
            try:
                await run()
            finally:
                self.active -= 1

        self.active += 1  # at once, before the next read: a running command or a stream is not idle
        if request.cmd == "subscribe":
            tg.start_soon(running)  # a stream: keep reading this connection (its hang-up ends the stream)
            return
        self.commands += 1
        try:
            await running()
        finally:
            self.commands -= 1
        if self.revoked is not None and not self.commands:
            self.hang_up("forbidden", self.revoked)


async def _send(stream: SocketStream, line: bytes) -> None:
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
        await stream.send(line)
