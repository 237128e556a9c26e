"""The control protocol's framing, property-tested in memory (spoolerd/control/protocol.py): whatever
request a client encodes comes out of the server's reader as it went in, however the bytes are cut,
and no sequence of bytes makes the reader or the parser raise anything but the protocol's own error."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from spoolerd.control.protocol import (
    ProtocolError,
    Request,
    RequestReader,
    encode_error,
    encode_event,
    encode_request,
    encode_result,
    parse_request,
)
from tests.control.pieces import feed_in_pieces

_text = st.text(max_size=20)  # any Unicode but lone surrogates, which JSON text may not carry
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
)
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)),
    max_leaves=10,
)
_ids = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), _text
)


@st.composite
def requests(draw: st.DrawFn) -> Request:
    body = draw(st.one_of(st.none(), st.binary(max_size=200)))
    return Request(
        draw(_ids),
        draw(st.text(min_size=1, max_size=12)),
        draw(st.dictionaries(_text, _json, max_size=5)),
        None if body is None else len(body),
        body,
    )


@given(st.lists(requests(), min_size=1, max_size=4), st.lists(st.integers(min_value=0), max_size=10))
def test_any_request_encodes_and_decodes_back(sent: list[Request], cuts: list[int]) -> None:
    stream = b"".join(encode_request(r) + (r.body or b"") for r in sent)
    assert feed_in_pieces(RequestReader(), stream, cuts) == sent


@given(requests())
def test_an_encoded_request_is_one_ascii_line(request: Request) -> None:
    line = encode_request(request)
    assert line.isascii() and line.endswith(b"\n") and line.count(b"\n") == 1
    assert parse_request(line[:-1]) == Request(request.id, request.cmd, request.args, request.body_length)


@given(
    st.lists(
        st.one_of(st.binary(max_size=80), st.sampled_from([b"\n", b'{"id":1,"cmd":"x","body":3}\n'])),
        max_size=12,
    ),
    st.lists(st.integers(min_value=0), max_size=10),
    st.integers(min_value=1, max_value=120),
    st.integers(min_value=0, max_value=50),
)
def test_arbitrary_bytes_give_requests_or_protocol_errors_only(
    chunks: list[bytes], cuts: list[int], line_limit: int, body_limit: int
) -> None:
    out = feed_in_pieces(RequestReader(line_limit=line_limit, body_limit=body_limit), b"".join(chunks), cuts)
    for item in out:
        assert isinstance(item, Request | ProtocolError)
        if isinstance(item, ProtocolError):
            assert item.code and item.message


@st.composite
def damaged_lines(draw: st.DrawFn) -> bytes:
    """A request line with some bytes changed, cut, or repeated: near misses reach the checks past JSON."""
    line = bytearray(encode_request(draw(requests()))[:-1])
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        at = draw(st.integers(min_value=0, max_value=max(len(line) - 1, 0)))
        action = draw(st.sampled_from(["set", "drop", "insert"]))
        if action == "set" and line:
            line[at] = draw(st.integers(min_value=0, max_value=255))
        elif action == "drop" and line:
            del line[at]
        else:
            line[at:at] = draw(st.sampled_from([b"{", b"[", b'"', b"\\", b",", b":", b"\\ud800", b"\xff"]))
    return bytes(line)


@given(st.one_of(damaged_lines(), st.binary(max_size=100)))
def test_a_line_parses_or_raises_the_protocols_error(line: bytes) -> None:
    try:
        request = parse_request(line)
    except ProtocolError as exc:
        assert exc.code in {"bad_json", "bad_request"} and exc.message
        assert exc.skip >= 0
        return
    assert isinstance(request.cmd, str) and request.cmd and isinstance(request.args, dict)


@given(_ids, _json, st.text(min_size=1, max_size=10), _text, st.dictionaries(_text, _json, max_size=3))
def test_answers_are_one_json_line_each(
    request_id: Any, result: Any, code: str, message: str, event: dict[str, Any]
) -> None:
    for line, expected in (
        (encode_result(request_id, result), {"id": request_id, "ok": True, "result": result}),
        (
            encode_error(request_id, code, message),
            {"id": request_id, "ok": False, "error": {"code": code, "message": message}},
        ),
        (encode_event(request_id, event), {"id": request_id, "event": event}),
    ):
        assert line.endswith(b"\n") and line.count(b"\n") == 1 and line.isascii()
        assert json.loads(line) == expected
