"""Reading DATA off the wire: the message up to ``<CRLF>.<CRLF>``, in pieces, under the size limit."""

from __future__ import annotations

import asyncio

from .content import unstuff

__all__ = ["read_data"]

_DATA_CHUNK = 1 << 16  # the reader's buffer bound during DATA


async def read_data(reader: asyncio.StreamReader, limit: int, *, restore: int) -> tuple[bytes | None, int]:
    """The message up to ``<CRLF>.<CRLF>``, dot-unstuffed, and its size; None when over ``limit`` (read
    to the end all the same, RFC 5321 §4.2.5). A connection lost here cancels the session: nothing kept.

    Read in pieces that end at ``.<CRLF>`` (rare in a body, never in base64), not line by line: a
    megabyte is a few reads, not thirteen thousand. The reader's buffer bound is widened for the transfer
    (the command-line bound would pause the socket every 2 KB) and set back to ``restore`` after it."""
    reader._limit = _DATA_CHUNK  # type: ignore[attr-defined]  # asyncio.StreamReader's buffer bound
    try:
        pieces: list[bytes] = []
        size = 0
        tail = b"\r\n"  # the two bytes before the current piece: DATA starts at a line start
        while True:
            try:
                piece = await reader.readuntil(b".\r\n")
                ended = (tail + piece[-5:]).endswith(b"\r\n.\r\n")
            except asyncio.LimitOverrunError as exc:
                piece, ended = await reader.read(exc.consumed), False
            size += len(piece)
            if limit and size > limit + 3:
                pieces.clear()  # over the limit: read on to the end, keep nothing
            else:
                pieces.append(piece)
            if ended:
                break
            tail = piece[-2:] if len(piece) >= 2 else (tail + piece)[-2:]
    finally:
        reader._limit = restore  # type: ignore[attr-defined]
    size -= 3  # the final ".<CRLF>"
    if limit and size > limit:
        return None, size
    return unstuff(b"".join(pieces)[:-3]), size
