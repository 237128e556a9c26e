"""A peer's reply quoted in a diagnostic (spoolerd/said.py) reads back as it was given."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from spoolerd.said import Quoted, quoted, said

words = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1).filter(
    lambda w: w.split() != [] and "(in reply to " not in " ".join(w.split())
)  # a reply's own words may hold parentheses ("see (https://...)"), not the transport's note


@given(
    st.sampled_from(["mx.example.net:25", "[192.0.2.1]:587"]),
    st.integers(200, 599),
    words,
    st.sampled_from(["MAIL FROM", "RCPT TO", "end of DATA"]),
)
def test_what_said_wrote_reads_back(peer: str, code: int, text: str, command: str) -> None:
    assert quoted(said(peer, code, text, command)) == Quoted(code, " ".join(text.split()))


def test_a_diagnostic_of_our_own_quotes_nothing() -> None:
    assert quoted("mx.example.net:25: cannot connect: refused") is None
    assert quoted("message expired after 5 days") is None
