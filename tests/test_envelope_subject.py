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
    assert header_subject(b"Subject: =?utf-8?q?a=00b?=\r\n\r\n") == "a b"  # a NUL too


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


def _with_the_email_package(content: bytes) -> str:
    """The Subject as the email package's own header parser reads it: the reference the fast path
    of ``header_subject`` (plain ASCII taken as it is) must agree with."""
    from email.parser import BytesHeaderParser
    from email.policy import compat32, default

    from spoolerd.envelope import header_end, one_line

    headers = BytesHeaderParser(policy=compat32).parsebytes(content[: header_end(content)])
    raw = headers.get("subject")
    if raw is None:
        return ""
    unfolded = "".join(str(raw).replace("\r\n", "\n").split("\n"))
    return " ".join(one_line(str(default.header_factory("subject", unfolded))).split())


ascii_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)


@given(st.lists(ascii_values, min_size=1, max_size=3), st.sampled_from([b"\r\n", b"\n"]))
def test_a_plain_ascii_subject_reads_as_the_email_package_reads_it(lines: list[str], eol: bytes) -> None:
    value = (eol + b" ").join(line.encode() for line in lines)
    content = (
        b"From: a@example.org" + eol + b"Subject: " + value + eol + b"To: b@example.org" + eol * 2 + b"x"
    )
    assert header_subject(content) == _with_the_email_package(content)
