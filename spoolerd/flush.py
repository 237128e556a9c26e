"""How a flush sees the per-destination failure cache (FlushQueues, as ``postqueue -f`` does it).

A plain flush tries every queued message now, those behind a destination marked down included: the
marks found when the flush first looks at a destination are passed over (Postfix's flush revives dead
destinations the same way). A destination found down again *during* the flush is marked anew, and that
new mark holds for the rest of the flush: its other messages are deferred at once with the reason,
instead of each waiting for its own connection to fail. ``force`` (MAPI's FLUSH_FORCE: "even if it is
time consuming") passes over every mark, so each message makes its own attempt.

The view reaches the delivery stages through a context variable set around one attempt, so they keep a
single destination check (``DestinationLimits.dead``, spoolerd/delivery/limits.py) for the scheduler and
for flushes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from .errors import NoAccess, NotFound
from .message import Access
from .routing import SenderRoutes, serves
from .store import MessageStore

__all__ = ["FlushView", "dead_until_for_flush", "flushing"]


@dataclass(slots=True)
class FlushView:
    """One flush's memory of the destination marks it found (``None``: not marked down). A mark made
    later is told apart by its expiry, ``now + hold`` at a failure after the first look."""

    found: dict[str, float | None] = field(default_factory=dict)

    def dead_until(self, destination: str, until: float | None) -> float | None:
        """The mark to honour: none when it is the one found at first sight, else the cache's."""
        first = self.found.setdefault(destination, until)
        return None if until == first else until


_VIEW: ContextVar[FlushView | None] = ContextVar("spoolerd_flush_view", default=None)


@contextmanager
def flushing(view: FlushView | None) -> Iterator[None]:
    """Let the attempt run inside this block see the destination cache as ``view`` does."""
    token = _VIEW.set(view)
    try:
        yield
    finally:
        _VIEW.reset(token)


def dead_until_for_flush(destination: str, until: float | None) -> float | None:
    """``until`` from the cache, as the flush running this attempt (if any) sees it."""
    view = _VIEW.get()
    return until if view is None else view.dead_until(destination, until)


async def waits_on(
    store: MessageStore,
    message_id: str,
    transport: str,
    transports: Sequence[tuple[str, frozenset[str] | None]],
    sender_routes: SenderRoutes,
) -> bool:
    """Whether the message waits on ``transport`` (FlushQueues' target transport; ``transports``: each
    transport's name and address types, in order): a recipient without a final outcome that this
    transport last handled (a deferral of its own), or, never tried by any, of an address type it
    serves (an earlier transport may pass it on with NOT_ME, which only trying tells). A recipient
    another transport deferred waits on that one."""
    try:
        message = await store.open(message_id, Access.BEST)
    except (NoAccess, NotFound):
        return True  # in flight or gone: joining (or skipping) it is harmless
    eligible = dict(sender_routes.eligible(message.sender, transports))
    if transport not in eligible:
        return False  # [sender_routes]: not a transport this sender's mail may take
    return any(
        r.transport == transport if r.transport is not None else serves(eligible[transport], r.address_type)
        for r in message.recipients
        if not r.state.final
    )
