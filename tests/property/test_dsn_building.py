"""Delivery status notifications (spoolerd/dsn.py), property-tested: whatever the recipients, their
diagnostics and the original, the report parses back with the email package as one RFC 3464
multipart/report, one status block per recipient with the fields as given (flattened to one line of
ASCII where a remote server's text is not), and the original or its header section byte-exact."""

from __future__ import annotations

import email
import email.policy
from email.message import Message

from hypothesis import given
from hypothesis import strategies as st

from spoolerd.dsn import RecipientStatus, ReportKind, build_report
from spoolerd.dsn_params import Ret
from spoolerd.envelope import header_section

_atoms = st.text(st.sampled_from("abcxyz0189.-_+="), min_size=1, max_size=10)
_addresses = st.builds(lambda local, domain: f"{local}@{domain}.example", _atoms, _atoms)
_statuses = st.builds(
    lambda c, s, d: f"{c}.{s}.{d}", st.sampled_from("245"), st.integers(0, 999), st.integers(0, 999)
)
_times = st.floats(min_value=0, max_value=4e9)


@st.composite
def recipients(draw: st.DrawFn) -> RecipientStatus:
    return RecipientStatus(
        address=draw(_addresses),
        status=draw(_statuses),
        code=draw(st.one_of(st.none(), st.integers(200, 599))),
        diagnostic=draw(st.text(max_size=60)),  # a remote server's words: CR LF, NUL, anything
        last_attempt=draw(st.one_of(st.none(), _times)),
        remote_mta=draw(st.one_of(st.none(), _atoms)),
        original_recipient=draw(st.one_of(st.none(), _addresses.map(lambda a: f"rfc822;{a}"))),
    )


_originals = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda head, nl, body: head.replace(b"\n", nl) + nl + body,
        st.sampled_from([b"From: a@b.example\nSubject: hi\n", b"Subject: x\n", b"X: 1\n\tfolded\n"]),
        st.sampled_from([b"\r\n", b"\n"]),
        st.binary(max_size=300),
    ),
)


def _one_line(value: str | None) -> bool:
    return value is not None and value.isascii() and "\r" not in value and "\n" not in value


@given(
    st.sampled_from(list(ReportKind)),
    st.lists(recipients(), min_size=1, max_size=5),
    st.tuples(_originals, st.integers(0, 400)),
    st.tuples(st.text(max_size=30), _times, _times),
    st.sampled_from([None, Ret.FULL, Ret.HDRS]),
)
def test_a_report_parses_back_with_the_fields_as_given(
    kind: ReportKind,
    rcpts: list[RecipientStatus],
    original_and_limit: tuple[bytes, int],
    envelope: tuple[str, float, float],
    ret: Ret | None,
) -> None:
    (original, limit), (envelope_id, arrival, now) = original_and_limit, envelope
    raw = build_report(
        kind,
        original=original,
        envelope_to="sender@origin.example",
        recipients=rcpts,
        reporting_mta="mx.example.org",
        arrival=arrival,
        now=now,
        original_envelope_id=envelope_id or None,
        original_limit=limit,
        ret=ret,
    )
    report = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert not report.defects
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    assert report["To"] == "<sender@origin.example>"
    parts = report.get_payload()
    assert isinstance(parts, list) and len(parts) == 3
    text, status, attached = parts
    assert text.get_content_type() == "text/plain"
    assert status.get_content_type() == "message/delivery-status"

    per_message, *blocks = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns; mx.example.org"
    assert _one_line(per_message["Arrival-Date"])
    assert (per_message["Original-Envelope-Id"] is None) == (not envelope_id)
    assert len(blocks) == len(rcpts)
    action = {ReportKind.NDR: "failed", ReportKind.DELAY: "delayed", ReportKind.DR: "delivered"}[kind]
    for block, sent in zip(blocks, rcpts, strict=True):
        assert isinstance(block, Message)
        assert block["Final-Recipient"] == f"rfc822; {sent.address}"
        original_rcpt = sent.original_recipient and sent.original_recipient.replace(";", "; ", 1)
        assert block["Original-Recipient"] == original_rcpt  # RFC 3461 ORCPT, as given
        assert (block["Action"], block["Status"]) == (action, sent.status)
        assert (block["Remote-MTA"] is None) == (not sent.remote_mta)
        if sent.remote_mta:
            assert block["Remote-MTA"] == f"dns; {sent.remote_mta}"
        diagnostic = block["Diagnostic-Code"]
        assert (diagnostic is None) == (not sent.diagnostic and not sent.code)
        if diagnostic is not None:
            assert _one_line(diagnostic)
            assert diagnostic.startswith(f"smtp; {sent.code} " if sent.code else "x-spoolerd; ")
        assert (block["Last-Attempt-Date"] is None) == (sent.last_attempt is None)

    # the whole original only in an NDR, within the limit, unless the submitter asked for headers (RET=HDRS)
    if kind is ReportKind.NDR and len(original) <= limit and ret is not Ret.HDRS:
        assert attached.get_content_type() == "message/rfc822"
        assert (
            b"\r\n\r\n" + original + b"\r\n--" in raw
        )  # byte-exact, between its part's head and the boundary
    else:
        assert attached.get_content_type() == "text/rfc822-headers"
        assert b"\r\n\r\n" + header_section(original) + b"\r\n--" in raw
