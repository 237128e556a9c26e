"""A session's message stored to the end: once the store has begun on it, a client that hangs up (or
a session timeout) does not cut the store's work short, so the message is committed and logged, or not
made at all."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from aiosmtpd.smtp import SMTP

from .commands import Reply

__all__ = ["to_the_end"]


async def to_the_end(session: SMTP, work: Coroutine[Any, Any, Reply]) -> Reply:
    """``work`` (the store's) awaited to its end even if the client hangs up meanwhile. aiosmtpd cancels
    the session's task through ``_handler_coroutine`` when the connection is lost or the timeout fires;
    while the message is stored, a stand-in keeps that cancel, and the session ends as soon as the store
    has answered. Awaited in the session's own task: a task and a shield of its own cost the 250 more
    turns of a busy event loop (bench/listener.py's probe, 16 sessions, three alternated pairs: p50
    times the rate 12.1k-12.5k against 14.6k-15.1k, a sixth less wait at the same rate)."""
    task = session._handler_coroutine
    stand_in = _CancelLater()
    session._handler_coroutine = stand_in  # type: ignore[assignment]
    try:
        reply = await work
    finally:
        session._handler_coroutine = task
    if stand_in.asked:  # the session ends here, as aiosmtpd's cancel would have ended it: a reply
        raise asyncio.CancelledError  # written to a connection already gone would fail instead
    return reply


class _CancelLater:
    """Stands in for a session's task while its message is stored: a cancel asked is only noted."""

    __slots__ = ("asked",)

    def __init__(self) -> None:
        self.asked = False

    def cancel(self, msg: Any = None) -> bool:
        self.asked = True
        return True
