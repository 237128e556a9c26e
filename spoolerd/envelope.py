"""Envelope data from an RFC 5322 header, with no I/O: what ``sendmail -t`` and the ``submit`` command
derive from a message when the caller gives no envelope. Standard library only (sendmail imports it)."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
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


def _text(raw: bytes) -> str:
    """A header value as text, unfolded: raw 8-bit bytes decoded as UTF-8, else as Latin-1 (a legacy
    mailer's display name must not cost the message, nor turn an address into replacement characters)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeError:
        text = raw.decode("latin-1")
    return " ".join(text.split())


def header_recipients(content: bytes) -> list[tuple[str, str, str]]:
    """(display name, address, kind) from To, Cc and Bcc, in that order, read like Postfix reads them;
    ``BadAddress`` for a field with something that cannot be mail in it."""
    fields = _header_fields(content)
    out = []
    for name, kind in KINDS:
        for field in fields:
            if field.name == name.encode():
                value = parse_address_list(_text(field.raw[field.value_at :]))
                out += [(m.display, m.address, kind) for m in value]
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


@dataclass(frozen=True, slots=True)
class _Field:
    name: bytes  # lower case; b"" for a line that does not start a field
    raw: bytes  # with its continuation lines and line ends, as it is in the message
    value_at: int  # where the value starts in ``raw``


def _header_fields(content: bytes) -> list[_Field]:
    """The header section's fields, in order, each with its continuation lines."""
    groups: list[list[bytes]] = []
    for line in content[: header_end(content)].splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and groups:
            groups[-1].append(line)
        else:
            groups.append([line])
    fields = []
    for group in groups:
        raw = b"".join(group)
        match = _FIELD_START.match(raw)
        name = match.group().rstrip(b" \t:").lower() if match else b""
        fields.append(_Field(name, raw, match.end() if match else 0))
    return fields


def has_field(content: bytes, name: bytes) -> bool:
    """Whether the header section has a field called ``name``."""
    return any(field.name == name.lower() for field in _header_fields(content))


def map_fields(content: bytes, names: Collection[bytes], change: Callable[[str], str | None]) -> bytes:
    """The content with the header fields called one of ``names`` (lower case) whose value ``change``
    rewrites (it gets the value unfolded; None keeps it) replaced; everything else byte for byte."""
    out, changed = [], False
    fields = _header_fields(content)
    for field in fields:
        new = change(_text(field.raw[field.value_at :])) if field.name in names else None
        if new is None:
            out.append(field.raw)
            continue
        newline = b"\r\n" if field.raw.endswith(b"\r\n") else b"\n" if field.raw.endswith(b"\n") else b""
        out.append(field.raw[: field.value_at] + b" " + new.encode() + newline)
        changed = True
    return b"".join(out) + content[sum(len(f.raw) for f in fields) :] if changed else content


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
