"""The control protocol without I/O: framing lines, parsing requests, encoding answers.

One JSON object per line. A request is ``{"id": <any JSON scalar>, "cmd": "<name>", "args": {...}}``;
the answer echoes the id: ``{"id": …, "ok": true, "result": …}`` or ``{"id": …, "ok": false, "error":
{"code": "…", "message": "…"}}``. A stream (``subscribe``) sends further lines ``{"id": …, "event": …}``.
Every malformed line gets an error answer with a stable code; nothing here raises past the server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_LINE",
    "LineBuffer",
    "ProtocolError",
    "Request",
    "encode_error",
    "encode_event",
    "encode_result",
    "parse_request",
]

MAX_LINE = 16 * 1024 * 1024  # a submit carries a base64 message (about 12 MB); longer lines are refused


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, request_id: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class Request:
    id: Any
    cmd: str
    args: dict[str, Any]


class LineBuffer:
    """Bytes in, complete lines out; a line over ``limit`` is reported once and skipped to its end."""

    def __init__(self, limit: int = MAX_LINE) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes | ProtocolError]:
        out: list[bytes | ProtocolError] = []
        self._buf += data
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > self.limit and not self._discarding:
                    out.append(
                        ProtocolError("line_too_long", f"request lines are limited to {self.limit} bytes")
                    )
                    self._discarding = True
                if self._discarding:
                    self._buf.clear()
                return out
            line = bytes(self._buf[:end])
            del self._buf[: end + 1]
            if self._discarding:
                self._discarding = False  # the end of the long line: resume after it
                continue
            if len(line) > self.limit:
                out.append(ProtocolError("line_too_long", f"request lines are limited to {self.limit} bytes"))
                continue
            out.append(line)


def parse_request(line: bytes) -> Request:
    try:
        data = json.loads(line)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError("bad_json", f"not a JSON object: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError("bad_request", "a request is a JSON object")
    request_id = data.get("id")
    if not (request_id is None or isinstance(request_id, str | int | float | bool)):
        raise ProtocolError("bad_request", "'id' must be a string or a number")
    cmd = data.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        raise ProtocolError("bad_request", "'cmd' must be a command name", request_id)
    args = data.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError("bad_request", "'args' must be an object", request_id)
    unknown = set(data) - {"id", "cmd", "args"}
    if unknown:
        raise ProtocolError(
            "bad_request", f"unknown request fields: {', '.join(sorted(unknown))}", request_id
        )
    return Request(request_id, cmd, args)


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"


def encode_result(request_id: Any, result: Any) -> bytes:
    return _line({"id": request_id, "ok": True, "result": result})


def encode_error(request_id: Any, code: str, message: str) -> bytes:
    return _line({"id": request_id, "ok": False, "error": {"code": code, "message": message}})


def encode_event(request_id: Any, event: dict[str, Any]) -> bytes:
    return _line({"id": request_id, "event": event})
