"""Sans-io IMAP pieces (RFC 3501): mailbox names on the wire, response codes, and what SELECT, SEARCH
and FETCH responses say, as aioimaplib hands them over (untagged lines without ``* ``, literals as
``bytearray``). Nothing here does I/O, so every parser is tested on bytes alone."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from spoolerd.envelope import header_end
from spoolerd.wiretext import has_control

__all__ = [
    "Fetched",
    "ResponseCode",
    "SelectInfo",
    "canonical_mailbox",
    "check_mailbox",
    "fingerprint",
    "header_block",
    "header_fields",
    "last_line",
    "mailbox_arg",
    "one_line",
    "parse_appenduid",
    "parse_fetch",
    "parse_search",
    "parse_select",
    "response_code",
    "uid_set",
]


def check_mailbox(name: str) -> str:
    """A mailbox name from the config: non-empty, no control characters (they would split the command
    line), at most 1,000 characters."""
    if not name or len(name) > 1000:
        raise ValueError("a mailbox name must have 1 to 1,000 characters")
    if has_control(name):
        raise ValueError(f"mailbox name {name!r} holds a control character")
    return name


def canonical_mailbox(name: str) -> str:
    """INBOX is case-insensitive (RFC 3501 5.1): any spelling of it is INBOX, one mailbox, one memory."""
    return "INBOX" if name.upper() == "INBOX" else name


def _utf7_chunk(text: str) -> str:
    raw = text.encode("utf-16-be")
    return "&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-"


def mailbox_arg(name: str) -> str:
    """``name`` as a command argument: modified UTF-7 (RFC 3501 5.1.3), then a quoted string."""
    check_mailbox(name)
    out: list[str] = []
    pending: list[str] = []
    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            if pending:
                out.append(_utf7_chunk("".join(pending)))
                pending.clear()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    if pending:
        out.append(_utf7_chunk("".join(pending)))
    encoded = "".join(out)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class ResponseCode:
    """The bracketed code that opens a response text (``[TRYCREATE]``, ``[APPENDUID 3 7]``)."""

    name: str
    args: str
    text: str  # the human-readable rest


_CODE = re.compile(rb"^\[([A-Za-z0-9.-]+)(?: ([^\]]*))?\]\s*(.*)$", re.S)


def response_code(line: bytes | bytearray) -> ResponseCode:
    """The response code and text of a tagged status line's text (``OK``/``NO``/``BAD`` removed)."""
    m = _CODE.match(bytes(line))
    if m is None:
        return ResponseCode("", "", _printable(bytes(line)))
    return ResponseCode(m.group(1).decode().upper(), (m.group(2) or b"").decode(), _printable(m.group(3)))


def _printable(raw: bytes) -> str:
    return one_line(raw.decode("utf-8", "replace"))[:300]


def one_line(text: str) -> str:
    """``text`` with every character that is not printable (CR, LF, other controls) made a space."""
    return "".join(c if c.isprintable() else " " for c in text.strip())


def last_line(response: Any) -> bytes:
    """The text of a tagged response (aioimaplib's ``Response``: its last line)."""
    return bytes(response.lines[-1]) if response.lines else b""


def parse_appenduid(line: bytes | bytearray) -> tuple[int, int] | None:
    """(UIDVALIDITY, UID) from an APPEND's ``[APPENDUID v uid]`` (UIDPLUS), if there."""
    code = response_code(line)
    if code.name != "APPENDUID":
        return None
    try:
        validity, uid = code.args.split()
        return int(validity), int(uid)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class SelectInfo:
    uidvalidity: int | None
    uidnext: int | None
    exists: int
    read_write: bool


_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_UIDNEXT = re.compile(rb"\[UIDNEXT (\d+)\]")
_EXISTS = re.compile(rb"^(\d+) EXISTS$")


def parse_select(lines: Iterable[bytes | bytearray]) -> SelectInfo:
    validity = uidnext = None
    exists = 0
    read_write = False
    for raw in lines:
        line = bytes(raw)
        if m := _UIDVALIDITY.search(line):
            validity = int(m.group(1))
        elif m := _UIDNEXT.search(line):
            uidnext = int(m.group(1))
        elif m := _EXISTS.match(line):
            exists = int(m.group(1))
        if b"[READ-WRITE]" in line:
            read_write = True
    return SelectInfo(validity, uidnext, exists, read_write)


def parse_search(lines: Sequence[bytes | bytearray]) -> list[int]:
    """The UIDs of a (UID) SEARCH response; the last line is the tagged status text."""
    uids: list[int] = []
    for raw in lines[:-1]:
        line = bytes(raw)
        if line.upper().startswith(b"SEARCH"):
            line = line[6:]
        uids.extend(int(word) for word in line.split() if word.isdigit())
    return uids


@dataclass(frozen=True, slots=True)
class Fetched:
    uid: int
    size: int | None
    flags: tuple[str, ...]
    literal: bytes | None  # the one literal asked for (the body, or header fields)


_FETCH_START = re.compile(rb"^\d+ FETCH \(")
_UID = re.compile(rb"[( ]UID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_LITERAL_AT_END = re.compile(rb"\{(\d+)\}$")


def parse_fetch(lines: Sequence[bytes | bytearray]) -> list[Fetched]:
    """Each FETCH response's UID, size, flags and literal. Unsolicited FETCH responses (flag changes by
    another client) come back too, with no literal; responses without a UID are skipped."""
    out: list[Fetched] = []
    attrs = b""
    literal: bytes | None = None
    in_item = False

    def close() -> None:
        if not in_item:
            return
        uid = _UID.search(attrs)
        if uid is None:
            return
        size = _SIZE.search(attrs)
        flags = _FLAGS.search(attrs)
        out.append(
            Fetched(
                int(uid.group(1)),
                int(size.group(1)) if size else None,
                tuple(flags.group(1).decode("ascii", "replace").split()) if flags else (),
                literal,
            )
        )

    for raw in lines:
        if isinstance(raw, bytearray):
            literal = bytes(raw)
            continue
        if _FETCH_START.match(raw):
            close()
            attrs, literal, in_item = raw, None, True
        elif in_item:
            attrs += b" " + raw  # the rest after a literal: ")" or more attributes
    close()
    return out


def uid_set(uids: Iterable[int]) -> str:
    """A compact UID set: ``1:3,7,9:10``."""
    ordered = sorted(set(uids))
    if not ordered:
        raise ValueError("an empty UID set")
    parts: list[str] = []
    start = prev = ordered[0]
    for uid in ordered[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        parts.append(str(start) if start == prev else f"{start}:{prev}")
        start = prev = uid
    parts.append(str(start) if start == prev else f"{start}:{prev}")
    return ",".join(parts)


def header_fields(raw: bytes, names: Iterable[str]) -> dict[str, str]:
    """The unfolded, whitespace-collapsed values of the named header fields (first occurrence), read
    from a message or from a ``BODY[HEADER.FIELDS (...)]`` literal alike."""
    wanted = {n.upper() for n in names}
    head = raw[: header_end(raw)]
    values: dict[str, str] = {}
    taking: str | None = None  # the field whose continuation lines are being joined
    for line in head.splitlines():
        if line[:1] in (b" ", b"\t"):
            if taking is not None:
                values[taking] += " " + line.strip().decode("utf-8", "replace")
            continue
        name, sep, value = line.partition(b":")
        taking = None
        if not sep:
            continue
        key = name.strip().decode("ascii", "replace").upper()
        if key in wanted and key not in values:
            values[key] = value.strip().decode("utf-8", "replace")
            taking = key
    return {k: " ".join(v.split()) for k, v in values.items()}


def header_block(raw: bytes) -> bytes:
    """The header section of a message, or of a ``BODY[HEADER]`` literal alike: up to the blank line,
    without the line break that ends its last field."""
    return raw[: header_end(raw)].rstrip(b"\r\n")


def fingerprint(size: int, header: bytes) -> bytes:
    """What recognises a message after a UIDVALIDITY change: its size and a digest of its whole header
    section (Received, Message-ID, Date, From, Subject and every other field, byte for byte), so that
    messages alike in size and sender are told apart by any header difference. ``header`` may be the
    whole message or its ``BODY[HEADER]``."""
    digest = hashlib.sha256(b"%d\n" % size + header_block(header))
    return digest.hexdigest()[:32].encode("ascii")
