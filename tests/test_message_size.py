"""The one message size check every submission path makes, and what an SMTP listener answers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spoolerd.errors import MessageTooLarge, SpoolerError
from spoolerd.message_size import check_message_size, smtp_reply


@given(size=st.integers(min_value=0, max_value=1 << 40), limit=st.integers(min_value=0, max_value=1 << 40))
def test_refused_exactly_when_over_a_limit_that_is_set(size: int, limit: int) -> None:
    if limit and size > limit:
        with pytest.raises(MessageTooLarge) as refused:
            check_message_size(size, limit)
        assert (refused.value.size, refused.value.limit) == (size, limit)
        assert f"message_size_limit of {limit} bytes" in str(refused.value)
    else:
        check_message_size(size, limit)  # 0: no limit, as in Postfix


def test_the_refusal_has_a_stable_code_and_an_smtp_reply() -> None:
    error = MessageTooLarge(30, 20)
    assert isinstance(error, SpoolerError) and error.code == "message_too_large"
    code, text = smtp_reply(error)
    assert code == 552 and text.startswith("5.3.4 ") and "20 bytes" in text
