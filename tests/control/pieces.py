"""Feeding a sans-io reader the way a socket does: the same bytes, cut anywhere."""

from __future__ import annotations

from spoolerd.control.protocol import ProtocolError, Request, RequestReader


def feed_in_pieces(reader: RequestReader, data: bytes, cuts: list[int]) -> list[Request | ProtocolError]:
    """Everything ``reader`` makes of ``data`` fed in pieces cut at ``cuts`` (taken modulo its length)."""
    out: list[Request | ProtocolError] = []
    last = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        out += reader.feed(data[last:cut])
        last = cut
    return out
