"""Envelope data from an RFC 5322 header, with no I/O: what ``sendmail -t`` and the ``submit`` command
derive from a message when the caller gives no envelope. Standard library only (sendmail imports it)."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import compat32, default
from email.utils import format_datetime, getaddresses

from .addressing import parse_address_list, unfold

__all__ = [
    "KINDS",
    "HeaderField",
    "field_date",
    "field_names",
    "first_field",
    "fold_header_crs",
    "fold_lone_crs",
    "has_field",
    "header_end",
    "header_fields",
    "header_message_id",
    "header_recipients",
    "header_section",
    "header_sender",
    "header_subject",
    "map_fields",
    "one_line",
    "with_field",
    "without_bcc",
]

KINDS = (("to", "to"), ("cc", "cc"), ("bcc", "bcc"))


def _fields(content: bytes, name: str) -> list[str]:
    """The raw values of a field, with 8-bit bytes read as UTF-8 (RFC 6532), or Latin-1 where they are
    not UTF-8: compat32 alone would turn them into surrogates or U+FFFD (``caf\ufffd\ufffd``)."""
    # the header section only: the parser would decode the whole message to text first
    # lone CRs folded first: the email package ends a line at one, every other reader here does not
    headers = BytesHeaderParser(policy=compat32).parsebytes(fold_lone_crs(content[: header_end(content)]))
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


@dataclass(frozen=True, slots=True)
class HeaderField:
    """One field of the header section: its name as written (``None`` for a line that has no colon, kept
    as it is), its raw lines with their continuations and line endings, byte-exact, and where its value
    starts in them."""

    name: str | None
    raw: bytes
    value_at: int = 0

    @property
    def key(self) -> str:
        """The name in lower case ("" for a line that has none)."""
        return self.name.lower() if self.name is not None else ""

    @property
    def value(self) -> str:
        """The unfolded value, 8-bit bytes read as ``_fields`` reads them (UTF-8, else Latin-1)."""
        return " ".join(_text(self.raw[self.value_at :].decode("ascii", "surrogateescape")).split())


_FIELD_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")
_LINE = re.compile(rb"[^\n]*\n|[^\n]+")  # a line ends at LF only: bytes.splitlines would end one at a CR


def header_fields(content: bytes) -> list[HeaderField]:
    """The header section (up to ``header_end``) split into fields. A name may be followed by blanks
    before its colon (``Bcc :``, obsolete syntax that relays still see); a line without a colon is a field
    of its own with no name, so what follows it is still read as header fields, as MTAs do."""
    starts: list[tuple[str | None, int]] = []  # each field's name and where its value starts
    pieces: list[list[bytes]] = []  # its lines, joined once (not a copy per continuation line)
    for line in _LINE.findall(header_section(content)):
        if line[:1] in (b" ", b"\t") and pieces:
            pieces[-1].append(line)
            continue
        found = _FIELD_NAME.match(line)
        starts.append((None, 0) if found is None else (found.group(1).decode("ascii"), found.end()))
        pieces.append([line])
    return [
        HeaderField(name, b"".join(lines), value_at)
        for (name, value_at), lines in zip(starts, pieces, strict=True)
    ]


def header_recipients(content: bytes) -> list[tuple[str, str, str]]:
    """(display name, address, kind) from To, Cc and Bcc, in that order, read like Postfix reads them
    (from the same fields ``without_bcc`` removes, so a recipient is never dropped from both the header
    and the envelope); ``BadAddress`` for a field with something that cannot be mail in it."""
    fields = header_fields(content)
    out = []
    for name, kind in KINDS:
        for field in fields:
            if field.key == name:
                out += [(m.display, m.address, kind) for m in parse_address_list(field.value)]
    return out


_NAME_AT_LINE_START = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:", re.MULTILINE)


def field_names(content: bytes) -> set[str]:
    """The names (lower case) of the header section's fields, as ``header_fields`` reads them, found
    without making a record of every field: a name starts a line, and continuation lines start with a
    blank, so no continuation is read as a field."""
    return {name.decode("ascii").lower() for name in _NAME_AT_LINE_START.findall(header_section(content))}


def first_field(content: bytes, name: str) -> HeaderField | None:
    """The header section's first field called ``name`` (any case), as ``header_fields`` would give it,
    found with ``bytes.find`` rather than a parse of every field (a Subject and a Message-ID are read
    for each message): a line that starts with the name, then blanks at most, then a colon."""
    section = header_section(content)
    lower = section.lower()  # the names are ASCII: a byte-wise lower() will do
    key = name.lower().encode("ascii")
    start: int | None = 0 if lower.startswith(key) else None
    after = 0  # where the search for the next line that starts with the name goes on from
    while True:
        if start is None:
            found = lower.find(b"\n" + key, after)
            if found < 0:
                return None
            start = found + 1
        colon = start + len(key)
        while lower[colon : colon + 1] in (b" ", b"\t"):
            colon += 1
        if lower[colon : colon + 1] == b":":
            break
        after, start = start, None  # not this line (a longer name, say): the next one
    end = start
    while (newline := section.find(b"\n", end)) >= 0 and section[newline + 1 : newline + 2] in (b" ", b"\t"):
        end = newline + 1  # a continuation line: the field goes on
    end = newline + 1 if newline >= 0 else len(section)
    written = section[start : start + len(key)].decode("ascii")  # the name as the message spells it
    return HeaderField(written, section[start:end], colon + 1 - start)


def has_field(content: bytes, name: bytes) -> bool:
    """Whether the header section has a field called ``name``."""
    wanted = name.lower().decode("ascii")
    return any(field.key == wanted for field in header_fields(content))


def map_fields(content: bytes, names: Collection[bytes], change: Callable[[str], str | None]) -> bytes:
    """The content with the header fields called one of ``names`` (lower case) whose value ``change``
    rewrites (it gets the value unfolded; None keeps it) replaced; everything else byte for byte."""
    wanted = {n.decode("ascii") for n in names}
    out, changed = [], False
    fields = header_fields(content)
    for field in fields:
        new = change(field.value) if field.name is not None and field.key in wanted else None
        if new is None:
            out.append(field.raw)
            continue
        newline = b"\r\n" if field.raw.endswith(b"\r\n") else b"\n" if field.raw.endswith(b"\n") else b""
        out.append(field.raw[: field.value_at] + b" " + new.encode() + newline)
        changed = True
    return b"".join(out) + content[sum(len(f.raw) for f in fields) :] if changed else content


_TRACE = frozenset({"received", "return-path"})  # RFC 5322 §3.6.7: always at the top


def with_field(content: bytes, field: bytes) -> bytes:
    """``field`` (one header line, no newline) put first, below the trace fields a message starts with
    (``Received:``, ``Return-Path:``: they stay on top, RFC 5321 §4.4), ending as the first line does. A
    message that starts with body text, as ``echo hi | sendmail root`` gives, gets the blank line that
    ends the header section it now has."""
    first = content.find(b"\n")
    newline = b"\r\n" if first > 0 and content[first - 1] == 0x0D else b"\n"
    if content.startswith((b"\n", b"\r\n")):
        return field + newline + content
    name = _FIELD_NAME.match(content)
    if name is None:
        return field + newline + newline + content
    at = 0  # past each trace field, its continuation lines too (a line ends at LF, as header_fields says)
    while name is not None and name.group(1).lower().decode("ascii") in _TRACE:
        end = content.find(b"\n", at)
        while end >= 0 and content[end + 1 : end + 2] in (b" ", b"\t"):
            end = content.find(b"\n", end + 1)
        if end < 0:  # trace fields only, the last without its line end
            return content + newline + field + newline
        at = end + 1
        name = _FIELD_NAME.match(content, at)
    return content[:at] + field + newline + content[at:]


_LONE_CR = re.compile(rb"\r(?!\n)")
# the fold's steps, in this order, each a replacement done in C: a line of CRs alone stays a line (a
# blank: never an empty line, which would end the header early); CRs before a line end are dropped, and
# at the section's end; at a line's start they are a blank; anywhere else a fold
_FOLD_STEPS = (
    (re.compile(rb"(?m)^\r+\n"), b" \r\n"),
    (re.compile(rb"\r+\n"), b"\r\n"),
    (re.compile(rb"\r+\Z"), b""),
    (re.compile(rb"(?m)^\r+"), b" "),
    (re.compile(rb"\r+(?!\n)"), b"\r\n "),
)


def fold_lone_crs(section: bytes) -> bytes:
    """A header section's lone CRs as they go on a wire (``lines.crlf``) and as the email package must
    be given them: every other reader here ends a line at LF only (``header_end``, as Postfix), so a
    lone CR may not start a field anywhere. A run of them inside a line is a fold (CRLF and a blank:
    what follows continues the line), at the start of a line a blank, before a line's end or at the
    section's end nothing; never an empty line, which would end the header on the wire early."""
    if not _LONE_CR.search(section):
        return section
    for pattern, replacement in _FOLD_STEPS:
        section = pattern.sub(replacement, section)
    return section


def fold_header_crs(content: bytes) -> bytes:
    """``content`` with the lone CRs of its header section folded (``fold_lone_crs``), its body as it
    is; ``content`` itself when the header has none."""
    end = header_end(content)
    if not _LONE_CR.search(content, 0, end):
        return content
    return fold_lone_crs(content[:end]) + content[end:]


def field_date(ts: float) -> str:
    """The RFC 5322 date of a field spoolerd writes (Date, Received, a report's dates): UTC with its
    offset, ``Tue, 01 Dec 2026 11:50:23 +0000``, the same in every one."""
    return format_datetime(datetime.fromtimestamp(ts, UTC))


def header_sender(content: bytes) -> str:
    """The address in Sender, else the first in From, else ""."""
    found = getaddresses(_fields(content, "sender") or _fields(content, "from"))
    return next((address for _display, address in found if address), "")


def header_subject(content: bytes) -> str:
    """The Subject as text on one line: RFC 2047 encoded words decoded, raw UTF-8 (or Latin-1) read as
    such, folding and control characters turned into single spaces. Plain ASCII (most subjects) is
    taken as it is, without the email package's header parser (a tenth of the time: one per submit)."""
    field = first_field(content, "subject")
    if field is None:
        return ""
    unfolded = unfold(_text(field.raw[field.value_at :].decode("ascii", "surrogateescape")))
    if unfolded.isascii() and "=?" not in unfolded:
        return " ".join(one_line(unfolded).split())
    try:  # the modern parser decodes encoded words beside raw non-ASCII text, which make_header cannot
        text = str(default.header_factory("subject", unfolded.strip()))
    except (ValueError, LookupError, IndexError):
        text = unfolded
    return " ".join(one_line(text).split())


def one_line(text: str) -> str:
    """``text`` with every control or other unprintable character (CR, LF, ESC, ...) made a space: safe
    for one line of a header, a log or a terminal."""
    return text if text.isprintable() else "".join(ch if ch.isprintable() else " " for ch in text)


def header_end(content: bytes) -> int:
    """Where the header section ends: the line ending of its last field, before the blank line (the
    section is ``content[:header_end]``), or the end of a header-only message. Lines end at LF, with or
    without a CR before it, and a message may mix the two (``\\n\\r\\n``, ``\\r\\n\\n``); a bare CR ends
    nothing, as in Postfix. Found without copying or splitting the body. This is the one place that
    decides it: every reader of "the header" slices with it."""
    if content.startswith((b"\n", b"\r\n")):
        return 0  # a blank first line: no header fields at all
    blank = content.find(b"\n\r\n")  # the usual blank line; an LF one can only be before it
    bare = content.find(b"\n\n", 0, len(content) if blank < 0 else blank + 1)
    if bare >= 0:
        blank = bare
    if blank < 0:
        return len(content)
    return blank - 1 if content[blank - 1 : blank] == b"\r" else blank


def header_section(content: bytes) -> bytes:
    """The header section with the line ending of its last field (not the blank line after it)."""
    end = header_end(content)
    if end == 0:
        return b""  # empty, or a blank first line: that line is the separator, not a field's ending
    end += 2 if content.startswith(b"\r\n", end) else 1 if content.startswith(b"\n", end) else 0
    return content[:end]


_BCC = frozenset({"bcc", "resent-bcc"})
_MAYBE_BCC = re.compile(rb"(?im)^(?:resent-)?bcc[ \t]*:")


def without_bcc(content: bytes) -> bytes:
    """Drop every Bcc and Resent-Bcc field (with their continuation lines, whatever the blanks before the
    colon) from the header section, as sendmail -t does and as a relay must never see them."""
    end = header_end(content)
    if not _MAYBE_BCC.search(content, 0, end):
        return content  # the common case, decided without splitting the message into lines
    fields = header_fields(content)
    kept = b"".join(f.raw for f in fields if f.key not in _BCC)
    return kept + content[sum(len(f.raw) for f in fields) :]


def header_message_id(content: bytes) -> str:
    """The Message-ID field's value, unfolded and printable ("" if there is none). Found with
    ``first_field``'s one search, not a parse: it is read for a log line per delivery."""
    field = first_field(content, "message-id")
    if field is None:
        return ""
    text = field.raw[field.value_at :].decode("utf-8", "replace")
    if not text.isprintable():  # line breaks of folding, or worse: control characters
        text = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(text.split())
