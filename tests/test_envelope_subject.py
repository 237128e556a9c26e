"""The Subject as the store keeps it and ``spoolerctl ls`` shows it: raw UTF-8, RFC 2047 and Latin-1."""

from __future__ import annotations

from email.header import Header

from hypothesis import given
from hypothesis import strategies as st

from spoolerd.envelope import header_recipients, header_subject

# what a person types as a subject: any printable text, spaces collapsed as the store keeps them
subjects = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Co", "Cn")), min_size=1, max_size=80
).map(lambda s: " ".join("".join(ch if ch.isprintable() else " " for ch in s).split()))


def test_raw_utf8_rfc2047_and_latin1_subjects_read_as_text() -> None:
    assert header_subject("Subject: café\r\n\r\nbody\r\n".encode()) == "café"
    assert header_subject(b"Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\n") == "café"
    assert header_subject(b"Subject: =?ISO-8859-1?Q?caf=E9?=\r\n\r\n") == "café"
    assert header_subject("Subject: café\n\n".encode("latin-1")) == "café"  # not UTF-8: Latin-1
    mixed = "Subject: déjà =?utf-8?q?=E2=82=AC?=\r\n =?utf-8?b?IDEw?=\r\n\r\n".encode()
    assert header_subject(mixed) == "déjà € 10"  # raw and encoded words side by side, folded


def test_control_characters_never_reach_the_subject() -> None:
    assert header_subject(b"Subject: a\x1b[31mred\x07\r\n\r\n") == "a [31mred"
    assert header_subject(b"Subject: =?utf-8?q?x=1B]0;owned=07y?=\r\n\r\n") == "x ]0;owned y"


def test_display_names_in_raw_utf8_are_text() -> None:
    content = "To: José Núñez <jose@example.org>\r\n\r\n".encode()
    assert header_recipients(content) == [("José Núñez", "jose@example.org", "to")]


@given(subjects)
def test_any_subject_survives_raw_utf8(subject: str) -> None:
    assert header_subject(f"Subject: {subject}\r\n\r\n".encode()) == subject


@given(subjects)
def test_any_subject_survives_rfc2047(subject: str) -> None:
    encoded = Header(subject, "utf-8", maxlinelen=76).encode()  # folded over several lines when long
    assert header_subject(f"Subject: {encoded}\r\n\r\n".encode()) == subject


@given(st.binary(max_size=200))
def test_any_bytes_give_one_printable_line(value: bytes) -> None:
    subject = header_subject(b"Subject: " + value.replace(b"\n", b"\n ") + b"\r\n\r\nbody")
    assert subject.isprintable() and subject == " ".join(subject.split())
