"""Envelope data from an RFC 5322 header, with no I/O: what ``sendmail -t`` and the ``submit`` command
derive from a message when the caller gives no envelope. Standard library only (sendmail imports it)."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

from .addressing import parse_address_list

__all__ = [
    "KINDS",
    "has_field",
    "header_end",
    "header_recipients",
    "header_sender",
    "header_subject",
    "map_fields",
    "with_field",
    "without_bcc",
]

KINDS = (("to", "to"), ("cc", "cc"), ("bcc", "bcc"))


def _fields(content: bytes, name: str) -> list[str]:
    headers = BytesHeaderParser(policy=compat32).parsebytes(content)
    return [str(v) for v in headers.get_all(name, [])]


def _utf8(value: str) -> str:
    """A header value as text: raw UTF-8 bytes, which the parser keeps as surrogates, decoded."""
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeError:
        return value  # not UTF-8: the address parser refuses what is left


def header_recipients(content: bytes) -> list[tuple[str, str, str]]:
    """(display name, address, kind) from To, Cc and Bcc, in that order, read like Postfix reads them;
    ``BadAddress`` for a field with something that cannot be mail in it."""
    out = []
    for field, kind in KINDS:
        for value in _fields(content, field):
            out += [(m.display, m.address, kind) for m in parse_address_list(_utf8(value))]
    return out


def header_sender(content: bytes) -> str:
    """The address in Sender, else the first in From, else ""."""
    found = getaddresses(_fields(content, "sender") or _fields(content, "from"))
    return next((address for _display, address in found if address), "")


def header_subject(content: bytes) -> str:
    from email.header import decode_header, make_header

    raw = _fields(content, "subject")
    if not raw:
        return ""
    try:
        text = str(make_header(decode_header(raw[0])))
    except (ValueError, LookupError):
        text = raw[0]
    return " ".join(text.split())


def header_end(content: bytes) -> int:
    """Where the header section ends: the blank line (CRLF or bare LF), or the end of a header-only
    message. Found without copying or splitting the body."""
    return min(
        (i for i in (content.find(b"\r\n\r\n"), content.find(b"\n\n")) if i >= 0), default=len(content)
    )


_FIELD_START = re.compile(rb"[!-9;-~]+[ \t]*:")


def has_field(content: bytes, name: bytes) -> bool:
    """Whether the header section has a field called ``name`` (a byte scan, nothing decoded)."""
    wanted = name.lower()
    for line in content[: header_end(content)].splitlines():
        match = _FIELD_START.match(line)
        if match is not None and match.group().rstrip(b" \t:").lower() == wanted:
            return True
    return False


def map_fields(content: bytes, names: Collection[bytes], change: Callable[[str], str | None]) -> bytes:
    """The content with the header fields called one of ``names`` (lower case) whose value ``change``
    rewrites (it gets the value unfolded; None keeps it) replaced; everything else byte for byte."""
    end = header_end(content)
    lines = content[:end].splitlines(keepends=True)
    fields: list[list[bytes]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    out, changed = [], False
    for field in fields:
        raw = b"".join(field)
        match = _FIELD_START.match(raw)
        if match is not None and match.group().rstrip(b" \t:").lower() in names:
            value = raw[match.end() :].decode("utf-8", "surrogateescape")
            new = change(" ".join(value.split()))
            if new is not None:
                newline = b"\r\n" if raw.endswith(b"\r\n") else b"\n" if raw.endswith(b"\n") else b""
                raw, changed = match.group() + b" " + new.encode("utf-8", "surrogateescape") + newline, True
        out.append(raw)
    return b"".join(out) + content[end:] if changed else content


def with_field(content: bytes, field: bytes) -> bytes:
    """``field`` (one header line, no newline) put first. A message that starts with body text, as
    ``echo hi | sendmail root`` gives, gets the blank line that ends the header section it now has."""
    newline = b"\r\n" if b"\r\n" in content[:4096] else b"\n"
    if content[:1] in (b"\r", b"\n") or _FIELD_START.match(content):
        return field + newline + content
    return field + newline + newline + content


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
