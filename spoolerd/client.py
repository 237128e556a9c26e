"""A small blocking client for the control socket, standard library only, so the command-line tools start
fast (``spoolerd-sendmail`` runs once per mail from cron, mailx or PHP). Requests are framed by the
protocol's own sans-io module (standard library only as well), the one place that knows the format."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .control.protocol import Request, encode_request

__all__ = ["ConnectionLost", "ControlClient", "Refused", "Unreachable", "default_socket_path"]


class Unreachable(Exception):
    """No daemon answers on the socket; ``denied``: this user may not open it (one may be running)."""

    def __init__(self, message: str, *, denied: bool = False) -> None:
        super().__init__(message)
        self.denied = denied


class ConnectionLost(Exception):
    """The connection broke after a request was sent: the daemon may or may not have acted on it."""


class Refused(Exception):
    """The daemon answered with an error object."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def default_socket_path() -> Path:
    """$SPOOLERD_SOCKET, else systemd's $RUNTIME_DIRECTORY, else /run/spoolerd if a daemon is there,
    else ./spool (the daemon's own defaults)."""
    explicit = os.environ.get("SPOOLERD_SOCKET")
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return Path(runtime) / "control.sock"
    system = Path("/run/spoolerd/control.sock")
    try:
        present = system.exists()
    except PermissionError:  # a directory this user may not search: connecting will say so
        present = True
    return system if present else Path("spool") / "control.sock"


class ControlClient:
    def __init__(self, path: str | os.PathLike[str] | None = None, timeout: float | None = 300.0) -> None:
        self.path = Path(path) if path is not None else default_socket_path()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(os.fspath(self.path))
        except PermissionError as exc:
            self._sock.close()
            raise Unreachable(f"permission denied on {self.path}", denied=True) from exc
        except OSError as exc:
            self._sock.close()
            raise Unreachable(f"no spoolerd answers at {self.path}: {exc.strerror or exc}") from exc
        self._buffer = b""
        self._next_id = 0

    def close(self) -> None:
        with contextlib.suppress(OSError):  # wakes a thread blocked reading events (close alone may not)
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _line(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            try:
                chunk = self._sock.recv(1 << 20)
            except OSError as exc:
                raise ConnectionLost(f"the connection to spoolerd broke: {exc}") from exc
            if not chunk:
                raise ConnectionLost("spoolerd closed the connection")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\n", 1)
        answer: dict[str, Any] = json.loads(raw)
        return answer

    def _send(self, cmd: str, args: dict[str, Any], body: bytes | None = None) -> int:
        self._next_id += 1
        request = Request(self._next_id, cmd, args, None if body is None else len(body))
        try:
            self._sock.sendall(encode_request(request))
            if body:
                self._sock.sendall(body)  # the raw bytes the line announced
        except OSError as exc:
            raise ConnectionLost(f"could not talk to spoolerd: {exc}") from exc
        return self._next_id

    def call(self, cmd: str, **args: Any) -> Any:
        """Send one command and return its result; ``Refused`` for an error answer."""
        return self._answer(self._send(cmd, {k: v for k, v in args.items() if v is not None}))

    def submit(self, content: bytes, **args: Any) -> Any:
        """``submit`` with the message as the request's body: any size up to the daemon's
        ``message_size_limit`` (``Refused`` with ``message_too_large`` above it)."""
        return self._answer(self._send("submit", {k: v for k, v in args.items() if v is not None}, content))

    def _answer(self, request_id: int) -> Any:
        while True:
            answer = self._line()
            if answer.get("id") not in (request_id, None) or "event" in answer:
                continue
            if answer.get("ok"):
                return answer.get("result")
            error = answer.get("error") or {}
            raise Refused(str(error.get("code", "error")), str(error.get("message", "")))

    def events(self, **args: Any) -> Iterator[dict[str, Any]]:
        """``subscribe``: yield events until the daemon goes away."""
        request_id = self._send("subscribe", {k: v for k, v in args.items() if v is not None})
        self._sock.settimeout(None)
        while True:
            answer = self._line()
            if answer.get("id") != request_id:
                continue
            if "event" in answer:
                yield answer["event"]
            elif not answer.get("ok", True):
                error = answer.get("error") or {}
                raise Refused(str(error.get("code", "error")), str(error.get("message", "")))
