"""A small blocking client for the control socket, standard library only, so the command-line tools start
fast (``spoolerd-sendmail`` runs once per mail from cron, mailx or PHP).

Start-up is most of a sendmail command's time (bench/sendmail.py), so this module imports only C
modules and ``os``: the ``socket`` module's wrapper and the ``json`` package both import ``enum`` (and
``json`` also ``re``), which on CPython 3.11 cost more than the interpreter's own start and the round
trip to the daemon together (``python -X importtime -c 'import spoolerd.sendmail'``: 54 ms before, 3 ms
after, on a loaded machine). So the socket is ``_socket.socket`` (the class ``socket.socket`` extends)
and a request line is encoded and an answer decoded with ``_json``'s C string quoting and scanner, the
parts ``json.dumps``/``json.loads`` are made of (``dumps_line``/``loads_line``, checked against ``json``
by tests/test_sendmail_imports.py). Neither is a hot path for ``typing``, ``pathlib`` or ``contextlib``.
The request line is the one ``spoolerd.control.protocol.encode_request`` frames (that module, the one
place that knows the format, imports ``json``, ``re`` and ``dataclasses``); the same test checks that
both give the same request.
"""

from __future__ import annotations

import os
from _json import encode_basestring_ascii, make_scanner
from _socket import AF_UNIX, SHUT_RDWR, SOCK_STREAM
from _socket import socket as _unix_socket

TYPE_CHECKING = False  # typing itself is not imported at run time (see above)
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

__all__ = [
    "SYSTEM_CONFIG",
    "ConnectionLost",
    "ControlClient",
    "Refused",
    "Unreachable",
    "config_file",
    "configured_socket",
    "default_socket_path",
    "dumps_line",
    "loads_line",
]


def dumps_line(value: object) -> bytes:
    """``value`` (dicts with str keys, lists, str, int, float, bool, None) as one line of JSON, ASCII
    only (what ``json.dumps(value).encode()`` gives, without its spaces)."""
    return _dumps(value).encode("ascii")


_INFINITIES = {float("inf"): "Infinity", float("-inf"): "-Infinity"}


def _dumps(value: object) -> str:
    if isinstance(value, str):
        return encode_basestring_ascii(value)
    if value is None or value is True or value is False:
        return "null" if value is None else "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):  # as json.dumps: NaN and the infinities as JavaScript names them
        if value != value:  # noqa: PLR0124 (NaN, without importing math)
            return "NaN"
        return _INFINITIES.get(value) or float.__repr__(value)
    if isinstance(value, dict):
        items = (f"{encode_basestring_ascii(str(k))}:{_dumps(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_dumps(v) for v in value) + "]"
    raise TypeError(f"not JSON: {type(value).__name__}")


class _Decoding:
    """The settings ``_json``'s scanner reads from ``json.JSONDecoder``: ``json.loads``'s defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    array_hook = None  # read by the scanner from Python 3.15
    parse_float = float
    parse_int = int
    parse_constant = float  # NaN, Infinity, -Infinity


_scan = make_scanner(_Decoding())  # type: ignore[arg-type]


def loads_line(raw: bytes) -> Any:
    """One line of JSON (UTF-8), as ``json.loads``; ValueError if it is not exactly one JSON value."""
    text = raw.decode("utf-8")
    start = len(text) - len(text.lstrip(" \t\n\r"))
    try:
        value, end = _scan(text, start)
    except StopIteration as exc:
        raise ValueError(f"not JSON at character {exc.value}") from exc
    if text[end:].strip(" \t\n\r"):
        raise ValueError(f"extra data after the JSON value at character {end}")
    return value


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


SYSTEM_CONFIG = "/etc/spoolerd/spoolerd.toml"


def default_socket_path() -> str:
    """$SPOOLERD_SOCKET, else systemd's $RUNTIME_DIRECTORY, else /run/spoolerd if a daemon is there,
    else ./spool (the daemon's own defaults)."""
    explicit = os.environ.get("SPOOLERD_SOCKET")
    if explicit:
        return explicit
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return os.path.join(runtime, "control.sock")
    system = "/run/spoolerd/control.sock"
    try:
        os.stat(system)
        present = True
    except PermissionError:  # a directory this user may not search: connecting will say so
        present = True
    except OSError:
        present = False
    return system if present else os.path.join("spool", "control.sock")


def config_file() -> str | None:
    """The daemon's configuration file as the commands find it: $SPOOLERD_CONFIG (or ``-C``), else the
    system file if there is one; None: the embedded default."""
    return os.environ.get("SPOOLERD_CONFIG") or (SYSTEM_CONFIG if os.path.exists(SYSTEM_CONFIG) else None)


def configured_socket() -> str | None:
    """The socket that the configuration in play gives the daemon ($SPOOLERD_CONFIG, else the system
    file, with ``SPOOLERD__*`` variables): where a client looks when no daemon answers at the default.
    None when $SPOOLERD_SOCKET names the socket, no configuration is in play, or it cannot be read. Only
    that case pays for reading it (the configuration's modules: a tenth of a second): the defaults above
    find a daemon on its shipped configuration without it."""
    if os.environ.get("SPOOLERD_SOCKET"):
        return None  # named explicitly: the one place to look
    path = config_file()
    if path is None and not any(name.startswith("SPOOLERD__") for name in os.environ):
        return None
    from .config import control_socket, load_config

    try:
        return os.fspath(control_socket(load_config(path)))
    except Exception:  # a configuration the daemon could not run on either: the default's error stands
        return None


def _connected(path: str, timeout: float | None) -> _unix_socket:
    sock = _unix_socket(AF_UNIX, SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except PermissionError as exc:
        sock.close()
        raise Unreachable(f"permission denied on {path}", denied=True) from exc
    except OSError as exc:
        sock.close()
        raise Unreachable(f"no spoolerd answers at {path}: {exc.strerror or exc}") from exc
    return sock


class ControlClient:
    """``path``: the control socket; by default the one ``default_socket_path`` finds, else the one the
    configuration names (``configured_socket``)."""

    def __init__(self, path: str | os.PathLike[str] | None = None, timeout: float | None = 300.0) -> None:
        if path is not None:
            self.path = os.fspath(path)
            self._sock = _connected(self.path, timeout)
        else:
            self.path = default_socket_path()
            try:
                self._sock = _connected(self.path, timeout)
            except Unreachable as exc:
                configured = None if exc.denied else configured_socket()
                if configured is None or configured == self.path:
                    raise
                self.path = configured
                self._sock = _connected(configured, timeout)
        self._buffer = b""
        self._next_id = 0

    def close(self) -> None:
        # shutdown wakes a thread blocked reading events (close alone may not); no contextlib: see above
        try:  # noqa: SIM105
            self._sock.shutdown(SHUT_RDWR)
        except OSError:
            pass
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
        answer: dict[str, Any] = loads_line(raw)
        return answer

    def _send(self, cmd: str, args: dict[str, Any], body: bytes | None = None) -> int:
        self._next_id += 1
        request: dict[str, Any] = {"id": self._next_id, "cmd": cmd, "args": args}
        if body is not None:
            request["body"] = len(body)  # the raw bytes follow the line
        try:
            self._sock.sendall(dumps_line(request) + b"\n")
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
