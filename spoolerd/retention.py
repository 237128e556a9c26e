"""Sent Items do not grow for ever: per store, a timer deletes sent copies older than the retention.

The timer sleeps until the oldest copy comes due (``store.oldest`` + the retention), deletes every copy
that is due (``store.purge``, one transaction per batch), and sleeps again until the next one. While it
is armed, a new copy cannot come due before it (it is younger), so finishing messages does not wake it:
its store subscription accepts a ``finish`` only while it is unarmed (nothing kept), and then one look
at the folder arms it for the new copy's due time. Nothing polls: an idle store's timer wakes once per
purge.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus

from .duration import format_duration
from .errors import StoreError
from .events import EventHub, QueueChanged, SpoolerEvent, StoreEvent, Subscription
from .message import FolderRole
from .store import Clock, MessageStore

__all__ = ["Filing", "SentKeeper", "filing", "retention_status", "sent_keepers"]

log = structlog.get_logger("spoolerd.retention")

STORE_RETRY = 60.0  # seconds before trying again after the store failed a purge
REARM_FLOOR = 1.0  # never re-arm for a time already past: a copy the purge could not take waits this long
# after a purge, the next waits at least a hundredth of the retention, at most an hour: copies filed one
# by one are purged together (a purge, and its log line, per copy was thousands a day), each at most that
# much after it came due
BATCH_SHARE = 0.01
BATCH_MOST = 3600.0


@dataclass(frozen=True, slots=True)
class Filing:
    """What becomes of a submitted message once it is sent (the FinishedMsg table's two switches)."""

    sentmail: bool  # moved to Sent Items
    delete_after_submit: bool  # deleted (after the move, if both)


def filing(store_keeps_copies: bool, *, sentmail: bool = True, delete_after_submit: bool = False) -> Filing:
    """How mail that local programs submit is filed: as the submitter asked, except that a store that
    keeps no copies (``sent_copies = false``) deletes what would have gone to Sent Items, rather than
    leave it in the Outbox."""
    keep = sentmail and store_keeps_copies
    return Filing(keep, delete_after_submit or (sentmail and not keep))


def _may_file(event: StoreEvent) -> bool:
    """A finish, or a change another process made (a delivery worker's or another daemon's finish is
    one, as this store hears of it)."""
    return isinstance(event, QueueChanged) and event.reason in ("finish", "external")


class SentKeeper:
    """Keeps a store's Sent Items to ``keep`` seconds (run it in a task group; ``wake`` re-reads the
    clock, for a clock that does not follow real time)."""

    def __init__(
        self, name: str, store: MessageStore, keep: float, *, clock: Clock, events: EventHub[SpoolerEvent]
    ) -> None:
        self.name = name
        self.store = store
        self.keep = keep
        self.clock = clock
        self.events = events
        self.due: float | None = None  # when the oldest copy comes due (None: unarmed, nothing kept)
        self.wakeups = 0  # times the timer woke: an idle store must not add to them
        self.purged = 0  # copies deleted since the start
        self._folder = ""
        self._wake = anyio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def refresh(self) -> None:
        """Look at Sent Items again after someone else deleted from it (``spoolerctl purge`` or ``rm``):
        the oldest copy may now come due later, or never."""
        oldest = await self.store.oldest(self._folder)
        self.due = None if oldest is None else oldest + self.keep
        self.wake()

    def _arms(self, event: StoreEvent) -> bool:
        """Let a finish through only while unarmed: armed, the timer is due before any new copy."""
        return self.due is None and _may_file(event)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._folder = (await self.store.folder(FolderRole.SENT)).id
        async with anyio.create_task_group() as tg, self.store.subscribe(accept=self._arms) as finishes:
            tg.start_soon(self._listen, finishes)
            oldest = await self.store.oldest(self._folder)
            if oldest is not None:  # a finish may have armed it meanwhile: the earlier time wins
                self._arm(oldest + self.keep)
            task_status.started()
            while True:
                timeout = math.inf if self.due is None else max(0.0, self.due - self.clock())
                with anyio.move_on_after(timeout):
                    await self._wake.wait()
                self._wake = anyio.Event()
                self.wakeups += 1
                if self.due is not None and self.due <= self.clock():
                    await self._purge_due()

    def _arm(self, at: float) -> bool:
        """Arm for ``at`` unless armed for earlier already; True if that changed the time."""
        if self.due is None or at < self.due:
            self.due = at
            return True
        return False

    async def _listen(self, finishes: Subscription[StoreEvent]) -> None:
        async for _ in finishes:
            finishes.pending()  # a burst of finishes is one look at the folder
            if self.due is not None:
                continue
            try:
                oldest = await self.store.oldest(self._folder)
            except StoreError:  # the copy is found at the next finish, purge or start
                log.exception("could not read sent items", store=self.name)
                continue
            if oldest is not None and self._arm(oldest + self.keep):
                self.wake()

    async def _purge_due(self) -> None:
        now = self.clock()
        self.due = None  # unarmed while it purges, so a copy filed meanwhile arms it again
        try:
            count = await self.store.purge(self._folder, now - self.keep)
            oldest = await self.store.oldest(self._folder)
        except StoreError:
            log.exception("could not purge sent items; trying again later", store=self.name)
            self._arm(now + STORE_RETRY)
            return
        self.purged += count
        log.info(
            "sent items purged",
            store=self.name,
            folder="sent",
            count=count,
            older_than=format_duration(self.keep),
        )
        self.events.publish({"type": "purged", "store": self.name, "folder": "sent", "count": count})
        if oldest is not None:
            batch = max(REARM_FLOOR, min(self.keep * BATCH_SHARE, BATCH_MOST))
            self._arm(max(oldest + self.keep, now + batch))


def sent_keepers(
    retention: Mapping[str, float | None],
    stores: Mapping[str, MessageStore],
    *,
    clock: Clock,
    events: EventHub[SpoolerEvent],
) -> dict[str, SentKeeper]:
    """A keeper for each store whose copies are kept for a limited time (``retention``: seconds per
    store name, None for ever)."""
    return {
        name: SentKeeper(name, stores[name], keep, clock=clock, events=events)
        for name, keep in retention.items()
        if keep is not None and name in stores
    }


def retention_status(keep: float | None, sent_copies: bool, keeper: SentKeeper | None) -> dict[str, Any]:
    """The store status row's ``retention`` part."""
    return {
        "sent": "forever" if keep is None else format_duration(keep),
        "sent_copies": sent_copies,
        "next_purge": None if keeper is None else keeper.due,
        "purged": 0 if keeper is None else keeper.purged,
    }
