"""The header section without I/O: fields, Bcc removal and the recipients sendmail -t reads (sans-io,
example-based and property-based)."""

from __future__ import annotations

import email
import email.policy

from hypothesis import given
from hypothesis import strategies as st

from spoolerd.envelope import header_end, header_fields, header_recipients, header_sender, without_bcc

MESSY = (
    b"From: a@example.org\r\nTo: x@example.org\r\nBcc : hidden@example.org\r\n"
    b"Resent-Bcc: resent@example.org\r\nthis line has no colon\r\n"
    b"bcc: after@example.org,\r\n  folded@example.org\r\nSubject: s\r\n\r\nBcc: body@example.org\r\n"
)


def test_every_bcc_variant_is_removed_and_every_recipient_kept() -> None:
    assert without_bcc(MESSY) == (
        b"From: a@example.org\r\nTo: x@example.org\r\nthis line has no colon\r\n"
        b"Subject: s\r\n\r\nBcc: body@example.org\r\n"
    )
    assert [(a, k) for _d, a, k in header_recipients(MESSY)] == [
        ("x@example.org", "to"),
        ("hidden@example.org", "bcc"),
        ("after@example.org", "bcc"),
        ("folded@example.org", "bcc"),
    ]


def test_a_message_without_bcc_is_returned_as_it_is() -> None:
    content = b"To: a@b\nSubject: Bcc: in the subject is not a field\n\nBcc: c@d\n"
    assert without_bcc(content) is content


_names = st.sampled_from(["To", "Cc", "Bcc", "bcc", "Bcc ", "Resent-Bcc", "Subject", "X-Bcc", "From"])
_values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
_endings = st.sampled_from([b"\r\n", b"\n"])


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    nl = draw(_endings)
    lines = []
    for name, value, folded in draw(st.lists(st.tuples(_names, _values, st.booleans()), max_size=8)):
        lines.append(f"{name}: {value}".encode() + nl + (b"  more" + nl if folded else b""))
    body = draw(st.binary(max_size=60)).replace(b"\r", b"").replace(b"\n", nl)
    return b"".join(lines) + nl + body


@given(messages())
def test_bcc_removal_keeps_everything_else_byte_exact(content: bytes) -> None:
    stripped = without_bcc(content)
    fields = header_fields(content)
    kept = [f for f in fields if (f.name or "").lower() not in ("bcc", "resent-bcc")]
    rest = content[sum(len(f.raw) for f in fields) :]  # the blank line and the body
    assert stripped == b"".join(f.raw for f in kept) + rest
    assert without_bcc(stripped) == stripped
    parsed = email.message_from_bytes(stripped, policy=email.policy.compat32)
    assert parsed.get_all("bcc") is None and parsed.get_all("resent-bcc") is None


@given(messages())
def test_the_fields_are_the_header_section_byte_for_byte(content: bytes) -> None:
    fields = b"".join(f.raw for f in header_fields(content))
    assert content.startswith(fields)
    assert content[len(fields) :].lstrip(b"\r\n") == content[header_end(content) :].lstrip(b"\r\n")


def test_a_field_behind_a_lone_cr_is_no_sender() -> None:
    """The email package ends a line at a lone CR; every other reader here (and the wire) does not, so
    the sender is read with them folded: a From or Sender hidden in a Subject is not the envelope sender
    (found by a first-day trial: MAIL FROM:<boss@corp.example> and a From field made for it)."""
    assert header_sender(b"To: a@remote.test\nSubject: s\rFrom: boss@corp.example\n\nb\n") == ""
    hidden = b"From: me@example.org\nSubject: s\rSender: boss@corp.example\n\nb\n"
    assert header_sender(hidden) == "me@example.org"
    assert header_sender(b"Subject: s\r\nFrom: me@example.org\r\n\r\nb\r\n") == "me@example.org"
