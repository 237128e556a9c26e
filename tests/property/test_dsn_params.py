"""RFC 3461 parameters (spoolerd/dsn_params.py), property-tested: NOTIFY and xtext read back what they
write, any text either parses or is InvalidArgument (never another error), and what parses is clean."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spoolerd.dsn_params import (
    DsnRequest,
    Notify,
    RecipientDsn,
    check_envid,
    check_orcpt,
    notify_text,
    parse_notify,
    parse_ret,
    wants,
    xtext_decode,
    xtext_encode,
)
from spoolerd.errors import InvalidArgument

_notifies = st.sampled_from([Notify(v) for v in range(8)])


@given(_notifies, st.booleans())
def test_notify_reads_back_what_it_writes(notify: Notify, lower: bool) -> None:
    text = notify_text(notify)
    assert parse_notify(text.lower() if lower else text) == notify
    assert (text == "NEVER") == (notify == Notify.NEVER)
    for event in (Notify.SUCCESS, Notify.FAILURE, Notify.DELAY):
        assert wants(notify, event, default=True) == (event in notify)
        assert wants(None, event, default=False) is False


@given(st.text(max_size=60))
def test_xtext_reads_back_what_it_writes(text: str) -> None:
    encoded = xtext_encode(text)
    assert encoded.isascii() and all(0x21 <= ord(c) <= 0x7E and c != "=" for c in encoded)
    assert xtext_decode(encoded) == text


@given(st.text(max_size=60))
def test_any_text_parses_or_is_invalid_argument(text: str) -> None:
    for check in (parse_notify, parse_ret, check_envid, check_orcpt, xtext_decode):
        try:
            value = check(text)
        except InvalidArgument:
            continue
        if check in (check_envid, check_orcpt):
            assert value == text and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


@given(
    st.dictionaries(
        st.sampled_from(["a@x.test", "b@x.test"]),
        st.builds(RecipientDsn, st.none() | _notifies, st.none() | st.just("rfc822;o@x.test")),
    )
)
def test_a_request_goes_through_the_socket_arguments_unchanged(recipients: dict[str, RecipientDsn]) -> None:
    request = DsnRequest(parse_ret("hdrs"), "id 1", Notify.DELAY, recipients)
    args = request.args()
    again = DsnRequest.parsed(
        args.get("ret"), args.get("envid"), args.get("notify"), args.get("recipient_dsn")
    )  # type: ignore[arg-type]
    assert again == request
    assert again.of("c@x.test") == RecipientDsn(Notify.DELAY)


def test_a_recipient_parameter_other_than_notify_or_orcpt_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="nofity"):
        DsnRequest.parsed(recipients={"a@x.test": {"nofity": "NEVER"}})


@pytest.mark.parametrize("bad", ["", "NEVER,SUCCESS", "SUCCESS,,FAILURE", "ALWAYS"])
def test_bad_notify(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_notify(bad)
