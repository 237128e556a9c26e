"""Envelope data from an RFC 5322 header, with no I/O: what ``sendmail -t`` and the ``submit`` command
derive from a message when the caller gives no envelope. Standard library only (sendmail imports it)."""

from __future__ import annotations

import re
from email.parser import BytesHeaderParser
from email.policy import compat32, default
from email.utils import getaddresses

__all__ = [
    "KINDS",
    "header_end",
    "header_recipients",
    "header_sender",
    "header_subject",
    "one_line",
    "without_bcc",
]

KINDS = (("to", "to"), ("cc", "cc"), ("bcc", "bcc"))
_FOLD = re.compile(r"\r?\n(?=[ \t])")  # a line break before whitespace: folding, removed to unfold


def _fields(content: bytes, name: str) -> list[str]:
    """The raw values of a field, with 8-bit bytes read as UTF-8 (RFC 6532), or Latin-1 where they are
    not UTF-8: compat32 alone would turn them into surrogates or U+FFFD (``caf\ufffd\ufffd``)."""
    # the header section only: the parser would decode the whole message to text first
    headers = BytesHeaderParser(policy=compat32).parsebytes(content[: header_end(content)])
    wanted = name.lower()
    return [_text(v) for k, v in headers.raw_items() if k.lower() == wanted]


def _text(value: str) -> str:
    if value.isascii():
        return value
    raw = value.encode("ascii", "surrogateescape")  # the parser's own escape: back to the bytes
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def header_recipients(content: bytes) -> list[tuple[str, str, str]]:
    """(display name, address, kind) from To, Cc and Bcc, in that order."""
    out = []
    for field, kind in KINDS:
        for display, address in getaddresses(_fields(content, field)):
            if address:
                out.append((display, address, kind))
    return out


def header_sender(content: bytes) -> str:
    """The address in Sender, else the first in From, else ""."""
    found = getaddresses(_fields(content, "sender") or _fields(content, "from"))
    return next((address for _display, address in found if address), "")


def header_subject(content: bytes) -> str:
    """The Subject as text on one line: RFC 2047 encoded words decoded, raw UTF-8 (or Latin-1) read as
    such, folding and control characters turned into single spaces."""
    raw = _fields(content, "subject")
    if not raw:
        return ""
    unfolded = _FOLD.sub("", raw[0])
    try:  # the modern parser decodes encoded words beside raw non-ASCII text, which make_header cannot
        text = str(default.header_factory("subject", unfolded))
    except (ValueError, LookupError, IndexError):
        text = unfolded
    return " ".join(one_line(text).split())


def one_line(text: str) -> str:
    """``text`` with every control or other unprintable character (CR, LF, ESC, ...) made a space: safe
    for one line of a header, a log or a terminal."""
    return text if text.isprintable() else "".join(ch if ch.isprintable() else " " for ch in text)


def header_end(content: bytes) -> int:
    """Where the header section ends: the blank line (CRLF or bare LF), or the end of a header-only
    message. Found without copying or splitting the body."""
    return min(
        (i for i in (content.find(b"\r\n\r\n"), content.find(b"\n\n")) if i >= 0), default=len(content)
    )


def without_bcc(content: bytes) -> bytes:
    """Drop Bcc fields (with their continuation lines) from the header section, as sendmail -t does."""
    end = header_end(content)
    if b"bcc:" not in content[: end + 2].lower():
        return content  # the common case, decided without splitting the message into lines
    out, dropping, in_header = [], False, True
    for line in content.splitlines(keepends=True):
        if in_header and line in (b"\r\n", b"\n"):
            in_header = False
        if in_header:
            if line[:1] in (b" ", b"\t"):
                if dropping:
                    continue
            else:
                dropping = line.lower().startswith(b"bcc:")
                if dropping:
                    continue
        out.append(line)
    return b"".join(out)
