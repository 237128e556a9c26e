"""RFC 3464 reports, parsed back with the email package."""

from __future__ import annotations

import email
import email.policy
from email.message import Message

import pytest

from spoolerd.dsn import RecipientStatus, ReportKind, build_report, report_class

ORIGINAL = (
    b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: hi\r\nMessage-ID: <m1@example.org>\r\n\r\n"
    + ("Grüße\r\n".encode())
)


def raw_ndr(*recipients: RecipientStatus) -> bytes:
    return build_report(
        ReportKind.NDR,
        original=ORIGINAL,
        envelope_to="a@example.org",
        recipients=list(recipients),
        reporting_mta="h",
        arrival=0,
        now=0,
    )


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def report(kind: ReportKind = ReportKind.NDR, original: bytes = ORIGINAL, **kw: object) -> Message:
    recipients = [
        RecipientStatus(
            "bob@example.net", "5.1.1", 550, "5.1.1 <bob@example.net>: no such user\r\nhere", 2e9
        ),
        RecipientStatus(
            "carol@example.net", "4.4.7", None, "message expired after 5 days (connection refused)"
        ),
    ]
    raw = build_report(
        kind,
        original=original,
        envelope_to="alice@example.org",
        recipients=recipients,
        reporting_mta="mail.example.org",
        arrival=1.9e9,
        now=2e9,
        **kw,  # type: ignore[arg-type]
    )
    return parse(raw)


def test_ndr_is_a_multipart_report_with_per_recipient_status() -> None:
    msg = report()
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["To"] == "<alice@example.org>" and msg["Auto-Submitted"] == "auto-replied"
    text, status, original = msg.get_payload()  # type: ignore[misc]
    assert text.get_content_type() == "text/plain"
    assert "<bob@example.net>: 550" in text.get_payload()
    assert status.get_content_type() == "message/delivery-status"
    per_message, bob, carol = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns; mail.example.org"
    assert (bob["Final-Recipient"], bob["Action"], bob["Status"]) == (
        "rfc822; bob@example.net",
        "failed",
        "5.1.1",
    )
    assert bob["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@example.net>: no such user here"
    assert bob["Last-Attempt-Date"] is not None
    assert (carol["Status"], carol["Action"]) == ("4.4.7", "failed")
    assert carol["Diagnostic-Code"].startswith("x-spoolerd; message expired")
    assert original.get_content_type() == "message/rfc822"
    (inner,) = original.get_payload()
    assert inner["Message-ID"] == "<m1@example.org>"


def test_a_relays_reply_is_the_diagnostic_code_as_the_relay_gave_it() -> None:
    """The smtp transport's diagnostic quotes the relay (``HOST said: REPLY (in reply to CMD)``): the
    Diagnostic-Code is the reply alone, as Postfix writes it, and the text part the sentence without
    the code in front again (found by a first-day trial: ``smtp; 550 5.1.1 mx:25 said: 550 5.1.1 ...``)."""
    said = (
        "mx.example.net:25 said: 550 5.1.1 <bob@example.net>: Recipient address rejected"
        " (in reply to RCPT TO)"
    )
    bare = "mx.example.net:25 said: 554 no thanks (in reply to end of DATA)"
    msg = parse(
        raw_ndr(
            RecipientStatus("bob@example.net", "5.1.1", 550, said),
            RecipientStatus("carol@example.net", "5.0.0", 554, bare),
        )
    )
    text, status, _ = msg.get_payload()  # type: ignore[misc]
    _, bob, carol = status.get_payload()
    assert bob["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected"
    assert carol["Diagnostic-Code"] == "smtp; 554 no thanks"
    assert f"<bob@example.net>: {said}" in text.get_payload()


def test_a_relays_words_are_one_printable_line_of_a_length_a_line_may_have() -> None:
    """A relay's reply with an escape sequence and a bell, or of 1,200 characters, makes no raw control
    character and no line over 998 octets in the report (found by a second first-day trial)."""
    evil = "mx:25 said: 550 5.7.1 evil\x1b[31m text\x07 here (in reply to RCPT TO)"
    long = "mx:25 said: 550 5.7.1 " + "x" * 1200 + " (in reply to RCPT TO)"
    raw = raw_ndr(
        RecipientStatus("a@example.org", "5.7.1", 550, evil),
        RecipientStatus("b" * 64 + "@" + "d" * 185 + ".example", "5.7.1", 550, long),
    )
    head = raw[: raw.index(ORIGINAL)]
    assert b"\x1b" not in head and b"\x07" not in head and b"evil?[31m text? here" in head
    assert max(len(line) for line in head.split(b"\r\n")) <= 998


def test_the_original_is_attached_byte_for_byte() -> None:
    raw = raw_ndr(RecipientStatus("b@example.org", "5.0.0", 550, "no"))
    assert ORIGINAL in raw
    assert b"Content-Transfer-Encoding: 8bit" in raw  # the original has 8-bit bytes


def test_above_the_size_limit_only_the_header_is_returned() -> None:
    big = ORIGINAL + b"x" * 100_000
    msg = report(original=big, original_limit=50_000)
    part = msg.get_payload()[2]  # type: ignore[index]
    assert part.get_content_type() == "text/rfc822-headers"
    assert "Message-ID: <m1@example.org>" in part.get_payload()
    assert "xxxx" not in part.get_payload()


def test_delivery_report_carries_headers_only() -> None:
    msg = report(ReportKind.DR)
    status = msg.get_payload()[1]  # type: ignore[index]
    assert {p["Action"] for p in status.get_payload()[1:]} == {"delivered"}
    assert msg.get_payload()[2].get_content_type() == "text/rfc822-headers"  # type: ignore[index]


def test_header_injection_in_diagnostics_is_flattened() -> None:
    raw = raw_ndr(RecipientStatus("b@example.org", "5.0.0", 550, "bad\r\nX-Injected: yes"))
    assert b"\r\nX-Injected" not in raw


def test_report_classes_follow_mapi() -> None:
    assert report_class("IPM.Note", ReportKind.NDR) == "REPORT.IPM.Note.NDR"
    assert report_class("", ReportKind.DR) == "REPORT.IPM.DR"


def test_a_report_needs_recipients() -> None:
    with pytest.raises(ValueError, match="at least one"):
        build_report(
            ReportKind.NDR,
            original=b"",
            envelope_to="a@b",
            recipients=[],
            reporting_mta="h",
            arrival=0,
            now=0,
        )
