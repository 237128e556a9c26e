"""The listener's DATA reader (``read_data``): whatever the line contents and however the bytes arrive,
it gives back exactly the message the client dot-stuffed, stops at ``<CRLF>.<CRLF>`` without reading
past it, and enforces the size limit while still reading to the end."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from spoolerd.listener.data import read_data
from transports.smtp.wire import data_payload

LINE_LIMIT = 1001  # the listener's command-line bound, which the reader restores

lines = st.lists(
    st.binary(max_size=120).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")), max_size=30
)
# a line is often just dots, or starts with one: the cases stuffing is about
dotty = st.lists(
    st.sampled_from([b"", b".", b"..", b".x", b"x.", b"a.b."]) | st.binary(max_size=8), max_size=30
)


def _read(wire: bytes, cuts: list[int], limit: int) -> tuple[bytes | None, int, bytes]:
    async def run() -> tuple[bytes | None, int, bytes]:
        reader = asyncio.StreamReader(limit=LINE_LIMIT)
        at = 0
        for cut in sorted(c % (len(wire) + 1) for c in cuts):
            reader.feed_data(wire[at:cut])
            at = max(at, cut)
        reader.feed_data(wire[at:])
        reader.feed_eof()
        content, size = await read_data(reader, limit, restore=LINE_LIMIT)
        assert reader._limit == LINE_LIMIT  # type: ignore[attr-defined]
        return content, size, await reader.read()

    return asyncio.run(run())


@given(lines | dotty, st.lists(st.integers(min_value=0), max_size=6))
def test_what_was_stuffed_comes_back_and_nothing_after_is_read(
    body_lines: list[bytes], cuts: list[int]
) -> None:
    message = b"".join(line + b"\r\n" for line in body_lines)
    content, size, rest = _read(data_payload(message) + b"QUIT\r\n", cuts, 0)
    assert content == message
    assert rest == b"QUIT\r\n"  # a pipelined command after the end of DATA stays for the session
    assert size >= len(message)


def test_long_lines_and_a_megabyte_in_one_piece() -> None:
    message = b"x" * 5000 + b"\r\n" + (b"." + b"y" * 75 + b"\r\n") * 14000
    content, _, rest = _read(data_payload(message), [], 0)
    assert content == message and rest == b""


@given(st.integers(min_value=1, max_value=3000), st.lists(st.integers(min_value=0), max_size=4))
def test_over_the_limit_is_read_to_the_end_and_kept_nowhere(limit: int, cuts: list[int]) -> None:
    message = (b"z" * 98 + b"\r\n") * 20  # 2,000 bytes
    content, size, rest = _read(data_payload(message) + b"RSET\r\n", cuts, limit)
    assert rest == b"RSET\r\n"
    assert (content is None) == (size > limit)
    assert content is None or content == message


def test_an_empty_message_and_a_bare_lf_dot_that_does_not_end_it() -> None:
    assert _read(b".\r\n", [], 0)[0] == b""
    content, _, _ = _read(b"a\n.\nb\r\n.\r\n", [2, 3], 0)
    assert content == b"a\n.\nb\r\n"  # <LF>.<LF> is no end (no SMTP smuggling)
