"""SMTP framing with no I/O: replies parsed out of received bytes (several at once when commands are
pipelined, RFC 2920), and a message encoded as DATA carries it (CRLF line endings, dot-stuffed, RFC 5321
§4.5.2). The common case, content already in CRLF form without a leading dot, costs a few C scans."""

from __future__ import annotations

import re
from dataclasses import dataclass

from spoolerd.lines import crlf, has_dot_lines  # moved there, with the rest of what a message's lines need

__all__ = ["DATA_END", "MAX_REPLY", "Payload", "ReplyParser", "SmtpProtocolError", "crlf", "data_payload"]

MAX_LINE = 8192
MAX_REPLY = 4 * MAX_LINE
_LEADING_DOT = re.compile(rb"(?m)^\.")
DATA_END = b".\r\n"  # after the message's last CRLF


class SmtpProtocolError(Exception):
    """The relay sent something that is not an SMTP reply."""


class ReplyParser:
    """Feed bytes; get back every reply they complete, as (code, text) with continuation lines joined
    by newlines and the code stripped from each."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._lines: list[bytes] = []

    def feed(self, data: bytes) -> list[tuple[int, str]]:
        self._buffer += data
        replies = []
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            if len(line) > MAX_LINE or not line[:3].isdigit() or line[3:4] not in (b" ", b"-", b"\r", b"\n"):
                raise SmtpProtocolError(f"not an SMTP reply line: {line[:80]!r}")
            self._lines.append(line)
            if sum(len(x) for x in self._lines) > MAX_REPLY:
                raise SmtpProtocolError("reply too long")
            if line[3:4] != b"-":
                code = int(self._lines[0][:3])
                text = "\n".join(x[4:].strip(b" \t\r\n").decode("utf-8", "replace") for x in self._lines)
                replies.append((code, text))
                self._lines = []
        if len(self._buffer) > MAX_LINE:
            raise SmtpProtocolError("reply line too long")
        return replies


@dataclass(frozen=True, slots=True)
class Payload:
    """A message as DATA carries it, before dot-stuffing: CRLF line endings, the last line too, no line
    over 998 octets. ``dot_free``: known to have no line that begins with "." (the store found none, and
    the lines go out as stored: ``ContentLines.NO_DOT``), so not searched again (half a millisecond a
    megabyte)."""

    content: bytes
    dot_free: bool = False

    def stuffed(self) -> bytes:
        """The content with each line's leading dot doubled (RFC 5321 §4.5.2); ``DATA_END`` follows it
        on the wire in the same gathering write (joined, a megabyte more to copy)."""
        if self.dot_free or not has_dot_lines(self.content):
            return self.content
        return _LEADING_DOT.sub(b"..", self.content)


def data_payload(wire: bytes) -> bytes:
    """``wire`` (CRLF line endings, ending in CRLF) dot-stuffed and terminated by ``.CRLF``."""
    return Payload(wire).stuffed() + DATA_END
