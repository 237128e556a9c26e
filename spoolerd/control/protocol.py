"""The control protocol without I/O: framing lines, parsing requests, encoding answers.

One JSON object per line. A request is ``{"id": <any JSON scalar>, "cmd": "<name>", "args": {...}}``;
the answer echoes the id: ``{"id": …, "ok": true, "result": …}`` or ``{"id": …, "ok": false, "error":
{"code": "…", "message": "…"}}``. A stream (``subscribe``) sends further lines ``{"id": …, "event": …}``.
Every malformed line gets an error answer with a stable code; nothing here raises past the server.

A request may carry raw bytes: ``"body": N`` in the request line announces exactly N bytes that follow
the newline (``submit`` sends its message so, of any size up to ``message_size_limit``, without base64
and without a line limit sized for it). A body over ``body_limit`` is answered ``message_too_large`` as
soon as it is announced, and its bytes are skipped, so the connection stays usable.

What a request may cost is bounded before it is parsed: at most ``MAX_VALUES`` JSON values (a 1 MiB
line of ``{},{},…`` would otherwise become some 20 MB of objects) and no deeper nesting than the parser
takes; a line that is not UTF-8 or carries a lone surrogate is a ``bad_request``, never a store error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import MessageTooLarge

__all__ = [
    "MAX_LINE",
    "MAX_VALUES",
    "ProtocolError",
    "Request",
    "RequestReader",
    "encode_error",
    "encode_event",
    "encode_request",
    "encode_result",
    "parse_request",
]

# A request line (a message larger than about 750 KB travels as a body, not as base64 in the line).
MAX_LINE = 1024 * 1024
# JSON values in one request (containers and their elements): ample for thousands of recipients.
MAX_VALUES = 20_000

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string: its commas and brackets are text
_SURROGATE = re.compile("[\ud800-\udfff]")


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, request_id: Any = None, skip: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.skip = skip  # bytes of an announced body that are to be read past


@dataclass(frozen=True, slots=True)
class Request:
    id: Any
    cmd: str
    args: dict[str, Any]
    body_length: int | None = None  # the raw bytes announced after the line (``"body": N``)
    body: bytes | None = None  # those bytes, once read


class RequestReader:
    """Bytes in, requests (with their bodies) out. A line over ``line_limit`` is reported once and
    skipped to its end; a body over ``body_limit`` (0: any size) is refused as soon as it is announced
    and skipped. A body is gathered in received chunks and joined once: at most twice its size."""

    def __init__(self, line_limit: int = MAX_LINE, body_limit: int = 0) -> None:
        self.line_limit = line_limit
        self.body_limit = body_limit
        self._buf = bytearray()
        self._discarding = False  # inside a line that was too long
        self._skip = 0  # bytes of a refused body still to come
        self._pending: Request | None = None  # a request whose body is being read
        self._chunks: list[bytes] = []
        self._missing = 0

    @property
    def buffered(self) -> int:
        """Bytes held for the request being read: its partial line, or the part of its body received."""
        if self._pending is not None:
            return (self._pending.body_length or 0) - self._missing
        return len(self._buf)

    @property
    def reading_body(self) -> bool:
        return self._pending is not None

    def feed(self, data: bytes) -> list[Request | ProtocolError]:
        out: list[Request | ProtocolError] = []
        pos, size = 0, len(data)
        while pos < size:
            if self._skip:
                taken = min(self._skip, size - pos)
                self._skip -= taken
                pos += taken
            elif self._pending is not None:
                taken = min(self._missing, size - pos)
                self._chunks.append(data[pos : pos + taken])  # the whole chunk itself, most often
                self._missing -= taken
                pos += taken
                if not self._missing:
                    out.append(self._body_done())
            else:
                newline = data.find(b"\n", pos)
                end = size if newline < 0 else newline
                if self._discarding or len(self._buf) + end - pos > self.line_limit:
                    if not self._discarding:
                        out.append(self._too_long())
                    self._buf.clear()
                    self._discarding = newline < 0  # resume after the end of the long line
                    pos = end + 1
                    continue
                self._buf += data[pos:end]
                pos = end + 1
                if newline >= 0:
                    line = bytes(self._buf)
                    self._buf.clear()
                    self._line(line, out)
        return out

    def _line(self, line: bytes, out: list[Request | ProtocolError]) -> None:
        try:
            request = parse_request(line)
        except ProtocolError as exc:
            out.append(exc)
            self._skip = exc.skip
            return
        length = request.body_length
        if length is None:
            out.append(request)
        elif self.body_limit and length > self.body_limit:
            refusal = MessageTooLarge(length, self.body_limit)
            out.append(ProtocolError(refusal.code, str(refusal), request.id))
            self._skip = length
        elif length == 0:
            out.append(Request(request.id, request.cmd, request.args, 0, b""))
        else:
            self._pending, self._missing = request, length

    def _body_done(self) -> Request:
        assert self._pending is not None
        body = b"".join(self._chunks)
        self._chunks = []
        request, self._pending = self._pending, None
        return Request(request.id, request.cmd, request.args, request.body_length, body)

    def _too_long(self) -> ProtocolError:
        return ProtocolError(
            "line_too_long",
            f"request lines are limited to {self.line_limit} bytes (submit sends a larger message as a body)",
        )


def parse_request(line: bytes) -> Request:
    values = _values(line)
    if values > MAX_VALUES:
        raise ProtocolError("bad_request", f"a request holds at most {MAX_VALUES} JSON values, not {values}")
    try:
        text, not_text = line.decode(), ""
    except UnicodeDecodeError as exc:  # refused below, once its announced body is known (to be skipped)
        text, not_text = line.decode(errors="replace"), f"a request is UTF-8 text: {exc}"
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ProtocolError("bad_json", f"not a JSON object: {exc}") from exc
    except RecursionError as exc:
        raise ProtocolError("bad_json", "not a JSON object: nested too deeply") from exc
    if not isinstance(data, dict):
        raise ProtocolError("bad_request", "a request is a JSON object")
    body_length = data.get("body")
    if body_length is not None and (
        not isinstance(body_length, int) or isinstance(body_length, bool) or body_length < 0
    ):
        raise ProtocolError("bad_request", "'body' must be a byte count", data.get("id"))
    skip = body_length or 0  # whatever is wrong below, the announced bytes are not requests
    request_id = data.get("id")
    if not_text or _has_surrogate(data):
        message = not_text or "a request's strings are Unicode text (a lone surrogate is not)"
        raise ProtocolError("bad_request", message, request_id, skip)
    if not (request_id is None or isinstance(request_id, str | int | float | bool)):
        raise ProtocolError("bad_request", "'id' must be a string or a number", None, skip)
    cmd = data.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        raise ProtocolError("bad_request", "'cmd' must be a command name", request_id, skip)
    args = data.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError("bad_request", "'args' must be an object", request_id, skip)
    unknown = set(data) - {"id", "cmd", "args", "body"}
    if unknown:
        raise ProtocolError(
            "bad_request", f"unknown request fields: {', '.join(sorted(unknown))}", request_id, skip
        )
    return Request(request_id, cmd, args, body_length)


def _values(line: bytes) -> int:
    """An upper bound of the JSON values in ``line``, counted without parsing it (strings are text)."""
    bare = _STRING.sub(b'""', line)
    return bare.count(b",") + bare.count(b"[") + bare.count(b"{") + 1


def _has_surrogate(data: Any) -> bool:
    """A lone surrogate (``"\\ud800"`` in JSON) anywhere: it cannot be encoded, stored or sent."""
    if isinstance(data, str):
        return _SURROGATE.search(data) is not None
    if isinstance(data, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in data.items())
    if isinstance(data, list):
        return any(_has_surrogate(v) for v in data)
    return False


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"


def encode_request(request: Request) -> bytes:
    """The line that carries ``request``, as a client sends it; with ``body_length`` set, it announces
    that many raw bytes, which the client sends after the line (``RequestReader`` reads both back)."""
    data: dict[str, Any] = {"id": request.id, "cmd": request.cmd, "args": request.args}
    if request.body_length is not None:
        data["body"] = request.body_length
    return _line(data)


def encode_result(request_id: Any, result: Any) -> bytes:
    return _line({"id": request_id, "ok": True, "result": result})


def encode_error(request_id: Any, code: str, message: str) -> bytes:
    return _line({"id": request_id, "ok": False, "error": {"code": code, "message": message}})


def encode_event(request_id: Any, event: Mapping[str, object]) -> bytes:
    return _line({"id": request_id, "event": event})
