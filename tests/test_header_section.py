"""Where the header section ends is decided once (``envelope.header_end``) and every reader of "the
header" agrees with it: the fields, the headers preprocessor, the header part of a report, on messages
that mix CRLF and bare LF line endings as real submissions do."""

from __future__ import annotations

import email
import email.policy

import pytest

from spoolerd.dsn import RecipientStatus, ReportKind, build_report
from spoolerd.envelope import header_end, header_fields, header_section, with_field
from spoolerd.preprocess import add_missing_headers

# LF in the header, CRLF in the body: the body's CRLF CRLF is no header end, and its Date: is body text
MIXED = (
    b"Subject: hi\nMessage-ID: <m@example.org>\n\nbody\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nend\r\n"
)


@pytest.mark.parametrize(
    ("content", "section"),
    [
        (b"A: 1\r\nB: 2\r\n\r\nbody\r\n", b"A: 1\r\nB: 2\r\n"),
        (b"A: 1\nB: 2\n\nbody\n", b"A: 1\nB: 2\n"),
        (b"A: 1\nB: 2\r\n\nbody\r\n\r\n", b"A: 1\nB: 2\r\n"),  # CRLF field, LF blank line
        (b"A: 1\r\nB: 2\n\r\nbody\n\n", b"A: 1\r\nB: 2\n"),  # LF field, CRLF blank line
        (b"A: 1\nB: 2\n", b"A: 1\nB: 2\n"),  # header only
        (b"A: 1\r\nB: 2", b"A: 1\r\nB: 2"),  # header only, no last line ending
        (b"A: 1\rB: 2\n\nbody", b"A: 1\rB: 2\n"),  # a bare CR ends no line
        (b"\nbody\n\n", b""),  # a blank first line: no header at all
        (b"\r\nbody\r\n\r\n", b""),
        (b"", b""),
    ],
)
def test_the_header_section_ends_at_the_first_empty_line_whatever_the_endings(
    content: bytes, section: bytes
) -> None:
    assert header_section(content) == section
    assert section.startswith(content[: header_end(content)])
    assert b"".join(f.raw for f in header_fields(content)) == section


def test_a_bare_cr_in_a_field_does_not_start_another() -> None:
    assert [f.name for f in header_fields(b"Subject: a\rb\nTo: x\n\n")] == ["Subject", "To"]


def test_a_date_in_the_body_of_a_mixed_message_is_no_date_field() -> None:
    added = add_missing_headers(MIXED, now=0.0, domain="example.org")
    assert added == b"Date: Thu, 01 Jan 1970 00:00:00 +0000\n" + MIXED
    parsed = email.message_from_bytes(added, policy=email.policy.compat32)
    assert parsed["Date"] == "Thu, 01 Jan 1970 00:00:00 +0000"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            b"Subject: s\r\n\r\nDate: body\r\n",
            b"Date: D\r\nMessage-ID: <M>\r\nSubject: s\r\n\r\nDate: body\r\n",
        ),
        (b"hello\n", b"Date: D\nMessage-ID: <M>\n\nhello\n"),  # body text only: a header section begins
        (b"\nDate: body\n", b"Date: D\nMessage-ID: <M>\n\nDate: body\n"),  # an empty header section
        (b"Date: d\nMessage-ID: <m>\n\nbody\n", None),
    ],
)
def test_the_headers_preprocessor_adds_what_the_header_section_lacks(
    content: bytes, expected: bytes | None
) -> None:
    added = add_missing_headers(content, now=0.0, domain="example.org")
    if added is not None:
        added = added.replace(b"Thu, 01 Jan 1970 00:00:00 +0000", b"D")
        mid = header_fields(added)[1]
        added = added.replace(mid.raw[mid.value_at :].strip(), b"<M>")
    assert added == expected


def test_with_field_keeps_the_trace_fields_on_top() -> None:
    """Mail the listener took in starts with its Received field: a Date or Message-ID the headers
    preprocessor adds goes below the trace fields (RFC 5321 §4.4), not above them (found by a first-day
    trial)."""
    received = b"Received: from c ([192.0.2.1])\r\n\tby mx (spoolerd); Tue, 1 Dec 2026 11:50:23 +0000\r\n"
    content = received + b"Return-Path: <a@b>\r\nSubject: s\r\n\r\nReceived: body\r\n"
    assert with_field(content, b"Date: D") == (
        received + b"Return-Path: <a@b>\r\nDate: D\r\nSubject: s\r\n\r\nReceived: body\r\n"
    )
    assert with_field(received + b"\r\nbody\r\n", b"X: y") == received + b"X: y\r\n\r\nbody\r\n"
    assert with_field(b"Received: x", b"X: y") == b"Received: x\nX: y\n"  # no line end: given one
    folded = b"Received: from a\n by b\n\tfor <c>; date\nReturn-Path: <r>\n"
    assert with_field(folded + b"To: t\n\nbody\n", b"X: y") == folded + b"X: y\nTo: t\n\nbody\n"
    assert header_fields(with_field(b"Received: x", b"X: y"))[1].name == "X"


def test_with_field_ends_the_new_line_as_the_first_line_ends() -> None:
    assert with_field(b"A: 1\nB: 2\r\n\r\n", b"X: y") == b"X: y\nA: 1\nB: 2\r\n\r\n"
    assert with_field(b"A: 1\r\nB: 2\n\n", b"X: y") == b"X: y\r\nA: 1\r\nB: 2\n\n"


def test_the_header_part_of_a_report_stops_at_the_header_of_a_mixed_message() -> None:
    report = build_report(
        ReportKind.DR,
        original=MIXED,
        envelope_to="a@example.org",
        recipients=[RecipientStatus("b@example.org", "2.0.0")],
        reporting_mta="mx.example.org",
        arrival=0.0,
        now=0.0,
    )
    headers = email.message_from_bytes(report, policy=email.policy.compat32).get_payload()[2]  # type: ignore[index]
    assert headers.get_content_type() == "text/rfc822-headers"
    assert headers.get_payload() == "Subject: hi\nMessage-ID: <m@example.org>\n"
