"""Envelope data from an RFC 5322 header, with no I/O: what ``sendmail -t`` and the ``submit`` command
derive from a message when the caller gives no envelope. Standard library only (sendmail imports it)."""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

__all__ = [
    "KINDS",
    "header_end",
    "header_message_id",
    "header_recipients",
    "header_sender",
    "header_subject",
    "without_bcc",
]

KINDS = (("to", "to"), ("cc", "cc"), ("bcc", "bcc"))


def _fields(content: bytes, name: str) -> list[str]:
    headers = BytesHeaderParser(policy=compat32).parsebytes(content)
    return [str(v) for v in headers.get_all(name, [])]


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


_MESSAGE_ID = b"message-id:"


def header_message_id(content: bytes) -> str:
    """The Message-ID field's value, unfolded and printable ("" if there is none). Found with a scan of
    the header section, not a parse: it is read for a log line per delivery."""
    head = content[: header_end(content)]
    lower = head.lower()
    if lower.startswith(_MESSAGE_ID):
        start = len(_MESSAGE_ID)
    else:
        found = lower.find(b"\n" + _MESSAGE_ID)
        if found < 0:
            return ""
        start = found + 1 + len(_MESSAGE_ID)
    end = start
    while (newline := head.find(b"\n", end)) >= 0 and head[newline + 1 : newline + 2] in (b" ", b"\t"):
        end = newline + 1  # a continuation line: the field goes on
    end = newline if newline >= 0 else len(head)
    text = head[start:end].decode("utf-8", "replace")
    if not text.isprintable():  # line breaks of folding, or worse: control characters
        text = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(text.split())
