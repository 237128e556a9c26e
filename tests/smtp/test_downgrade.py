"""transports/smtp/downgrade.py without I/O: what it returns always fits SMTP and says the same text."""

from __future__ import annotations

import email
import email.policy
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transports.smtp.downgrade import Unchangeable, conform, has_long_lines
from transports.smtp.wire import crlf

_lines = st.lists(
    st.one_of(st.text(max_size=40), st.text(alphabet="ab c\u00e9", min_size=990, max_size=2500)),
    min_size=1,
    max_size=6,
)


def _text(content: bytes) -> str:
    parsed = email.message_from_bytes(content, policy=email.policy.default)
    return str(parsed.get_content()).replace("\r\n", "\n")


@settings(max_examples=60, deadline=None)
@given(_lines, st.booleans(), st.booleans())
def test_what_conform_returns_fits_smtp_and_keeps_the_text(lines: list[str], mime: bool, eight: bool) -> None:
    text = "\n".join(line.replace("\r", "").replace("\n", "") for line in lines) + "\n"
    head = b"Subject: t\r\n" + (
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        if mime
        else b""
    )
    wire = crlf(head + b"\r\n" + text.encode())
    out = conform(wire, eight_bit=eight)
    assert not has_long_lines(out)
    assert eight or out.isascii()
    if out is not wire:
        assert _text(out) == text
    assert conform(out, eight_bit=eight) == out  # nothing left to fix


def test_content_that_conforms_is_returned_as_it_is() -> None:
    wire = b"Subject: t\r\n\r\ncaf\xc3\xa9\r\n"
    assert conform(wire, eight_bit=True) is wire


def test_a_long_header_line_is_refused() -> None:
    with pytest.raises(Unchangeable, match="header line"):
        conform(b"Subject: " + b"x" * 1200 + b"\r\n\r\nbody\r\n", eight_bit=True)


_breaks = st.sampled_from([b"\r", b"\n", b"\r\n"])
_runs = st.lists(_breaks | st.integers(0, 1100).map(lambda n: b"x" * n), max_size=8)


@given(_runs)
def test_has_long_lines_finds_a_run_of_999_octets_without_cr_or_lf(parts: list[bytes]) -> None:
    data = b"".join(parts)
    assert has_long_lines(data) == (re.search(rb"[^\r\n]{999}", data) is not None)
