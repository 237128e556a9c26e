"""The control protocol's request reader, in memory: lines, bodies, refusals, any chunking."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from spoolerd.control.protocol import ProtocolError, Request, RequestReader
from tests.control.pieces import feed_in_pieces


def _request(n: int, body: bytes | None) -> bytes:
    head: dict[str, object] = {"id": n, "cmd": "submit" if body is not None else "ping", "args": {}}
    if body is not None:
        head["body"] = len(body)
    return json.dumps(head).encode() + b"\n" + (body or b"")


@given(
    bodies=st.lists(st.one_of(st.none(), st.binary(max_size=300)), min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
)
def test_requests_and_bodies_come_out_whole_however_the_bytes_are_cut(
    bodies: list[bytes | None], cuts: list[int]
) -> None:
    """A body may hold newlines and JSON: it is bytes, counted, never parsed as requests."""
    data = b"".join(_request(n, body) for n, body in enumerate(bodies))
    out = feed_in_pieces(RequestReader(line_limit=200, body_limit=1000), data, cuts)
    assert [(r.id, r.body) for r in out if isinstance(r, Request)] == list(enumerate(bodies))
    assert not [e for e in out if isinstance(e, ProtocolError)]


@given(cuts=st.lists(st.integers(min_value=0, max_value=5_000), max_size=20))
def test_a_body_over_the_limit_is_refused_when_announced_and_skipped(cuts: list[int]) -> None:
    big = b'{"id": 9, "cmd": "ping"}\n' * 100  # looks like requests: must not be taken for them
    data = _request(1, big) + _request(2, None) + _request(3, b"ok")
    out = feed_in_pieces(RequestReader(line_limit=200, body_limit=1000), data, cuts)
    assert isinstance(out[0], ProtocolError) and out[0].request_id == 1
    assert out[0].code == "message_too_large"
    assert f"{len(big)} bytes" in out[0].message and "message_size_limit of 1000 bytes" in out[0].message
    assert [(r.id, r.body) for r in out[1:] if isinstance(r, Request)] == [(2, None), (3, b"ok")]
    assert len(out) == 3


def test_long_lines_are_refused_and_skipped_bodies_of_bad_requests_too() -> None:
    reader = RequestReader(line_limit=100, body_limit=0)  # 0: a body of any size
    out = reader.feed(b"x" * 150)
    out += reader.feed(b"x" * 150 + b"\n" + _request(1, None))
    # a request that names a body but is wrong otherwise: its body is skipped, not read as lines
    out += reader.feed(b'{"id": 2, "cmd": "submit", "colour": 1, "body": 5}\n{"a"}' + _request(3, b""))
    out += reader.feed(b'{"id": 4, "cmd": "submit", "body": -1}\n' + _request(5, None))
    kinds = [(o.code, o.request_id) if isinstance(o, ProtocolError) else (o.cmd, o.id) for o in out]
    assert kinds == [
        ("line_too_long", None), ("ping", 1), ("bad_request", 2), ("submit", 3), ("bad_request", 4),
        ("ping", 5),
    ]  # fmt: skip
