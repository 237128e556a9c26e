"""The one control-character test (spoolerd/wiretext.py) against the definition it stands for: a code
point below U+0020, or U+007F. Non-ASCII text, C1 controls among it, is not its business (a header's
8-bit text may hold it; the address parser has its own, wider, class)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from spoolerd.errors import InvalidArgument
from spoolerd.message import check_wire_text
from spoolerd.wiretext import first_control, has_control, printable

_DEFINITION = re.compile(r"[\x00-\x1f\x7f]")
# mostly printable ASCII, with controls, DEL, C1 and the rest of Unicode mixed in
_text = st.text(
    st.one_of(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        st.characters(max_codepoint=0x20),
        st.sampled_from(["\x7f", "\x80", "\x85", "\x9f", "\u2028", "é"]),
        st.characters(),
    ),
    max_size=80,
)


@given(_text)
def test_has_control_is_the_definition(text: str) -> None:
    found = _DEFINITION.search(text)
    assert has_control(text) == (found is not None)
    assert first_control(text) == (None if found is None else found.group())


@given(_text)
def test_check_wire_text_refuses_exactly_what_has_control(text: str) -> None:
    try:
        assert check_wire_text("value", text) == text
    except InvalidArgument as exc:
        bad = first_control(text)
        assert bad is not None and repr(bad) in str(exc)
    else:
        assert not has_control(text)


def test_the_characters_that_split_a_line() -> None:
    for text in ("a\rb", "a\nb", "\r\n", "tab\there", "nul\0", "del\x7f"):
        assert has_control(text), text
    for text in ("", "user@example.org", "Grüße", "\x85 is C1", "\u2028"):
        assert not has_control(text), text


@given(_text)
def test_printable_shows_each_unprintable_character_as_a_question_mark(text: str) -> None:
    shown = printable(text)
    assert shown.isprintable() and len(shown) == len(text)
    assert all(a == b or (b == "?" and not a.isprintable()) for a, b in zip(text, shown, strict=True))
