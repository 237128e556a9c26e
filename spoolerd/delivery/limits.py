"""Per-destination limits: how many attempts talk to one destination at once, and whether it is down.

A destination is a transport's own name for where a recipient goes (``relay:smtp.example.org``). While
attempts use it, it has a concurrency limit (the transport's ``destination_concurrency``, else the
spooler's); an idle destination keeps nothing. A destination that stopped answering is held for a while
(the failure cache, ``DestinationCache``): its recipients are deferred without an attempt, and its going
down and coming up again are each logged, and turn its transport's status row failing and back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .. import maillog
from ..events import SpoolerEvent
from ..flush import dead_until_for_flush
from ..resource_state import StatusChanges
from ..retry import DestinationCache
from ..slot import DESTINATION, TransportSlot
from ..store import Clock
from ..transport import Outcome, OutcomeKind

__all__ = ["DestinationLimit", "DestinationLimits"]


@dataclass(slots=True)
class DestinationLimit:
    """One busy destination's concurrency limit, and how many attempts use it (waiting or in)."""

    semaphore: asyncio.Semaphore  # asyncio's, not anyio's: the daemon runs on asyncio, and it is cheaper
    users: int = 0


class DestinationLimits:
    """The limits of the destinations in use, and the failure cache every attempt shares."""

    def __init__(
        self, cache: DestinationCache, clock: Clock, publish: Callable[[SpoolerEvent], None]
    ) -> None:
        self.cache = cache
        self.clock = clock
        self.changes = StatusChanges(clock, publish)  # a transport's row failing, or answering again
        self._busy: dict[str, DestinationLimit] = {}  # only destinations in use have one
        self.renewed: dict[str, float] = {}  # destinations held (again) since last taken: until when

    @contextmanager
    def use(self, key: str, concurrency: int) -> Iterator[asyncio.Semaphore]:
        """Count an attempt as a user of destination ``key`` while the block runs; the limit to take."""
        limit = self._busy.get(key)
        if limit is None:
            limit = self._busy[key] = DestinationLimit(asyncio.Semaphore(concurrency))
        limit.users += 1
        try:
            yield limit.semaphore
        finally:
            limit.users -= 1
            if limit.users == 0:
                self._busy.pop(key, None)  # only busy destinations keep a limiter

    def dead(self, key: str, count: int, force: bool) -> list[Outcome] | None:
        """Deferrals without an attempt when the destination is known dead (``force`` tries anyway)."""
        now = self.clock()
        until = None if force else dead_until_for_flush(key, self.cache.dead_until(key, now))
        if until is None:
            return None
        destination = key.partition(":")[2]
        outcome = Outcome(
            OutcomeKind.DEFERRED,
            None,
            "4.4.1",
            f"destination {destination} is not responding; left alone until it is due",
            until - now,
            attempted=False,
        )
        return [outcome] * count

    def observe(self, slot: TransportSlot, destination: str, key: str, answers: list[Outcome]) -> None:
        """What a send to the destination says of it: up again after a delivery, down when no
        recipient got an answer of its own (no reply at all, or 4.4.x). Deferrals without a try (it
        is held already) say nothing: only a real failure holds it again, for longer."""
        if not any(o.attempted for o in answers):
            return
        if any(o.kind is OutcomeKind.DELIVERED for o in answers):
            down_since = self.cache.succeeded(key)
            if down_since is not None:
                self._came_up(slot, destination, down_since)
        elif answers and all(_destination_down(o) for o in answers):
            hint = max((o.retry_after or 0.0) for o in answers)
            went_down = self.cache.failed(key, self.clock(), hint or None)
            until = self.cache.dead_until(key, self.clock())
            if until is not None:
                self.renewed[key] = until
            if went_down:
                self._went_down(slot, destination, answers[0])

    def _went_down(self, slot: TransportSlot, destination: str, outcome: Outcome) -> None:
        """One of the slot's destinations stopped answering: logged, and its row failing (one event)."""
        relay = outcome.relay or destination
        reason = maillog.reply_text(outcome.diagnostic, relay)
        maillog.relay_down(transport=slot.name, relay=relay, dsn=outcome.status, reason=reason)
        slot.last_error = f"{outcome.status or ''} {outcome.diagnostic}".strip()
        self.changes.fail(slot.resource, DESTINATION + destination, reason, slot.last_error)

    def _came_up(self, slot: TransportSlot, destination: str, down_since: float) -> None:
        maillog.relay_up(transport=slot.name, relay=destination, down_for=self.clock() - down_since)
        self.changes.recover(slot.resource, DESTINATION + destination)


def _destination_down(outcome: Outcome) -> bool:
    """A deferral that speaks of the destination, not of one mailbox: no reply at all, or 4.4.x."""
    return outcome.kind is OutcomeKind.DEFERRED and (
        outcome.code is None or (outcome.status or "").startswith("4.4.")
    )
