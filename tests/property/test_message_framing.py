"""The message's framing, property-tested in memory: where the header section ends
(spoolerd/envelope.py), Bcc removal, and what the SMTP transport puts on the wire (CRLF line endings,
dot-stuffing; transports/smtp/wire.py), on messages that mix CRLF, bare LF and stray CRs."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from spoolerd import lines
from spoolerd.envelope import (
    field_names,
    first_field,
    header_end,
    header_fields,
    header_section,
    without_bcc,
)
from spoolerd.lines import MAX_LINE, has_long_lines, lines_of
from spoolerd.message import ContentLines
from spoolerd.preprocess import add_missing_headers
from transports.smtp.wire import crlf, data_payload

# bytes that matter to line structure, often; anything else, sometimes
_wire_bytes = st.lists(
    st.one_of(
        st.sampled_from([b"\r\n", b"\n", b"\r", b".", b"..", b" ", b":", b"Bcc:", b"x"]),
        st.binary(min_size=1, max_size=4),
    ),
    max_size=40,
).map(b"".join)
_endings = st.sampled_from([b"\r\n", b"\n"])
_names = st.sampled_from(
    [b"To", b"Cc", b"Bcc", b"bcc", b"Bcc ", b"Resent-Bcc", b"Subject", b"X-Bcc", b"Date"]
)
_values = st.binary(max_size=20).map(lambda v: v.replace(b"\n", b"").replace(b"\r", b""))


@st.composite
def messages(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(message, its header section): fields with their own line endings, folded at times, a blank line
    of either ending, then any body."""
    header = b""
    for name, value, fold in draw(st.lists(st.tuples(_names, _values, st.booleans()), max_size=6)):
        header += name + b":" + value + draw(_endings)
        if fold:
            header += b" \tmore" + draw(_endings)
    return header + draw(_endings) + draw(_wire_bytes), header


def _reference_section(content: bytes) -> bytes:
    """The header section by the book: lines end at LF; it ends before the first empty line (nothing
    but its CR LF or LF), or at the end of the message."""
    at = 0
    for line in re.findall(rb"[^\n]*\n|[^\n]+", content):
        if line in (b"\n", b"\r\n"):
            return content[:at]
        at += len(line)
    return content


@given(st.one_of(_wire_bytes, messages().map(lambda m: m[0])))
def test_the_header_section_ends_at_the_first_empty_line(content: bytes) -> None:
    section = header_section(content)
    assert section == _reference_section(content)
    if section == content:  # a header-only message: its end
        assert header_end(content) == len(content)
    else:  # before the line ending of the last field (if there is one), which header_section keeps
        ending = b"\r\n" if section.endswith(b"\r\n") else b"\n" if section.endswith(b"\n") else b""
        assert content[: header_end(content)] == section[: len(section) - len(ending)]
    assert b"".join(f.raw for f in header_fields(content)) == section


@given(messages())
def test_the_header_section_is_the_fields_as_written(message: tuple[bytes, bytes]) -> None:
    content, header = message
    assert header_section(content) == header


@given(messages())
def test_bcc_removal_drops_only_bcc_fields_and_keeps_the_body_byte_exact(
    message: tuple[bytes, bytes],
) -> None:
    content, header = message
    stripped = without_bcc(content)
    kept = [f for f in header_fields(content) if f.key not in ("bcc", "resent-bcc")]
    assert stripped == b"".join(f.raw for f in kept) + content[len(header) :]
    assert header_fields(stripped) == kept
    assert without_bcc(stripped) == stripped


def _lines(content: bytes) -> list[bytes]:
    """The lines of ``content`` whichever way they end (CRLF, LF, or a lone CR, as the wire sees it)."""
    lines = re.split(rb"\r\n|\n|\r", content)
    return lines[:-1] if lines[-1] == b"" else lines


@given(_wire_bytes)
def test_crlf_gives_the_same_lines_each_ended_by_crlf(content: bytes) -> None:
    wire = crlf(content)
    assert wire.endswith(b"\r\n")
    assert wire.count(b"\r") == wire.count(b"\n") == wire.count(b"\r\n")  # no bare CR or LF is left
    assert crlf(wire) is wire  # content already so is passed through, not copied
    # only line ends and blanks change, and the fields on the wire are those every check here saw (a
    # lone CR ends no header line here: on the wire it is a fold, never the start of a field)
    assert re.sub(rb"[\r\n \t]", b"", wire) == re.sub(rb"[\r\n \t]", b"", content)
    assert [f.name for f in header_fields(wire) if f.name] == [
        f.name for f in header_fields(content) if f.name
    ]
    if not re.search(rb"\r(?!\n)", content[: header_end(content)]):
        assert _lines(wire) == (_lines(content) or [b""])  # the same lines, a lone CR ending a body line


# lines about the longest allowed: 998 octets (two 499s), 999 (and a y), longer
_long_lines = st.lists(st.sampled_from([b"x" * 499, b"y", b"\r\n", b"\n", b"\r"]), max_size=8).map(b"".join)


@given(_wire_bytes | _long_lines)
def test_what_a_store_records_of_the_lines_is_what_the_transport_would_find(content: bytes) -> None:
    lines = lines_of(content)
    assert (ContentLines.CRLF in lines) == (crlf(content) is content)
    wire = crlf(content)  # a header's lone CR folded: the line after it one blank longer (found in review)
    assert (ContentLines.SHORT in lines) == (not has_long_lines(wire))
    assert (ContentLines.SHORT in lines) == all(len(line) <= MAX_LINE for line in _lines(wire))
    assert (ContentLines.NO_DOT in lines) == (not re.search(rb"(?m)^\.", content))
    as_stored = ContentLines.CRLF | ContentLines.SHORT | ContentLines.NO_DOT
    if lines & as_stored == as_stored:  # what the smtp transport trusts: no dot to stuff on the wire
        assert data_payload(without_bcc(wire)) == without_bcc(wire) + b".\r\n"


@given(_long_lines, st.integers(min_value=1, max_value=1200))
def test_long_lines_are_found_across_the_windows_they_are_looked_at_in(content: bytes, window: int) -> None:
    saved, lines._WINDOW = lines._WINDOW, window  # a megabyte at a time, where it counts
    try:
        assert has_long_lines(content) == any(len(line) > MAX_LINE for line in _lines(content))
    finally:
        lines._WINDOW = saved


def _unstuff(payload: bytes) -> bytes:
    """What an SMTP server makes of DATA (RFC 5321 §4.5.2): up to the line that is a lone dot, one
    leading dot removed from every line."""
    lines = payload.split(b"\r\n")
    end = lines.index(b".")
    assert lines[end + 1 :] == [b""], "the lone dot is the last line"
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines[:end])


@given(_wire_bytes)
def test_dot_stuffing_round_trips(content: bytes) -> None:
    wire = crlf(content)
    payload = data_payload(wire)
    assert payload.endswith(b"\r\n.\r\n")
    assert _unstuff(payload) == wire


_TRACE_HEAD = st.lists(
    st.sampled_from([b"Received: from a by b; Thu, 1 Jan 1970\r\n", b"Return-Path: <r@example.org>\r\n"]),
    max_size=2,
).map(b"".join)


@given(st.one_of(messages().map(lambda m: m[0]), _wire_bytes), _TRACE_HEAD)
def test_the_headers_preprocessor_only_puts_missing_fields_first(content: bytes, trace: bytes) -> None:
    """Missing Date and Message-ID go first, below the trace fields a message starts with."""
    if trace and re.match(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:", content):  # begins with a field
        content = trace + content
    else:
        trace = b""
    lead = len(header_fields(trace + b"\r\n")) if trace else 0
    added = add_missing_headers(content, now=0.0, domain="example.org")
    present = {f.key for f in header_fields(content)}
    if added is None:
        assert {"date", "message-id"} <= present
        return
    assert added.startswith(trace)
    fields = header_fields(added)
    new = [f.key for f in fields[lead : lead + 2 - len(present & {"date", "message-id"})]]
    assert set(new) == {"date", "message-id"} - present
    for key in ("date", "message-id"):  # one added where there was none, none where there was one
        before = sum(f.key == key for f in header_fields(content))
        assert sum(f.key == key for f in fields) == (before or 1)
    head = b"".join(f.raw for f in fields[lead : lead + len(new)])
    rest = added[len(trace) + len(head) :]
    content = content[len(trace) :]
    # the message follows byte for byte; body text that came first is now after a blank line
    assert rest == content or (
        rest.endswith(content) and rest[: len(rest) - len(content)] in (b"\n", b"\r\n")
    )


@given(
    st.one_of(messages().map(lambda m: m[0]), _wire_bytes), st.sampled_from(["subject", "bcc", "date", "x"])
)
def test_field_names_and_first_field_read_as_the_parse_does(content: bytes, name: str) -> None:
    """The lookups that do without a parse of every field find what ``header_fields`` finds."""
    fields = header_fields(content)
    assert field_names(content) == {f.key for f in fields if f.name is not None}
    assert first_field(content, name) == next((f for f in fields if f.key == name), None)
