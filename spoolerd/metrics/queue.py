"""Feeding each store's ``StoreCensus``: the events it follows, the re-scans and reads it asks for.

Events are taken as they are published (``tap``), in order and without a task in between, so a scrape
that follows an event counts it. What needs the store (counting the queue at start, after a write by
another process, and reading a message whose recipients the census was not told of) runs in one task,
never on behalf of a scrape: a scrape only reads what is known.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import anyio
import structlog
from anyio.abc import TaskStatus

from ..errors import NoAccess, NotFound, NotInQueue, StoreError
from ..events import QueueChanged, SpoolerEvent, StoreEvent, Subscription
from ..message import Access
from ..store import Clock, MessageStore, QueueCounter
from .census import StoreCensus, StoreCount

__all__ = ["QueueCensus", "tap"]

log = structlog.get_logger("spoolerd.metrics")

E = TypeVar("E")

RESCAN_GAP = 10.0  # seconds at least between two re-scans of a store that other processes write to
READS_AT_ONCE = 8  # messages opened at once while learning their recipients (a remote store: round trips)


def tap(subscribe: Callable[..., Subscription[E]], observe: Callable[[E], None]) -> Subscription[E]:
    """Have ``observe`` called with every event as it is published. It rides on a subscription's
    ``accept`` filter, which sees each event synchronously, and declines them all: nothing is queued
    and nothing wakes, whatever the hub (a store's or the spooler's)."""

    def accept(event: E) -> bool:
        observe(event)
        return False

    return subscribe(accept=accept)


class QueueCensus:
    """Every store's census, kept while the daemon runs."""

    def __init__(self, stores: Mapping[str, MessageStore], clock: Clock, rescan_gap: float = RESCAN_GAP):
        self.stores = {name: store for name, store in stores.items() if store.can_queue}
        self.clock = clock
        self.rescan_gap = rescan_gap
        self.census = {name: StoreCensus() for name in self.stores}
        self._rescan = set(self.stores)  # stores to count again
        self._work = anyio.Event()
        self._last_rescan: dict[str, float] = {}
        self._taps: list[Subscription[Any]] = []

    def start(self, spooler_events: Callable[..., Subscription[SpoolerEvent]]) -> None:
        """Follow the stores' and the spooler's events from now on (before the first count)."""
        for store in self.stores.values():
            self._taps.append(tap(store.subscribe, self._store_event))
        self._taps.append(tap(spooler_events, self._spooler_event))

    def stop(self) -> None:
        for subscription in self._taps:
            subscription.close()
        self._taps.clear()

    def _store_event(self, event: StoreEvent) -> None:
        if not isinstance(event, QueueChanged) or event.store not in self.census:
            return
        if self.census[event.store].changed(event, self.clock()):
            self._rescan.add(event.store)
            self._work.set()

    def _spooler_event(self, event: SpoolerEvent) -> None:
        if event["type"] != "deferred":
            return
        census = self.census.get(event["store"])
        if census is not None:
            census.attempted(event["id"], event["recipients"])

    def announced(self, store: str, message_id: str, recipients: int) -> None:
        census = self.census.get(store)
        if census is not None:
            census.announced(message_id, recipients)

    def count(self, store: str, active: list[str]) -> StoreCount | None:
        """The store's counts (None: not counted yet, or a store that cannot queue)."""
        census = self.census.get(store)
        return census.count(active) if census is not None and census.scanned else None

    # ------------------------------------------------------------------ the store calls

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self._work = anyio.Event()
            for name in sorted(self._rescan):
                wait = self._last_rescan.get(name, -self.rescan_gap) + self.rescan_gap - time.monotonic()
                if wait > 0:
                    await anyio.sleep(wait)  # other processes write here often: not more than this
                self._rescan.discard(name)
                began = time.monotonic()
                if await self._count(name):
                    await self._count_recipients(name)
                    await self._read_unknown(name)
                    counted = self.census[name].count(())
                    log.info(
                        "queue counted",
                        store=name,
                        messages=sum(counted.messages.values()),
                        recipients=sum(counted.recipients.values()),
                        seconds=round(time.monotonic() - began, 3),
                    )
            for name in self.stores:
                await self._read_unknown(name)
            if not self._rescan:
                await self._work.wait()

    async def _count(self, name: str) -> bool:
        store, census = self.stores[name], self.census[name]
        self._last_rescan[name] = time.monotonic()
        census.rescan_begun()
        try:
            entries = [entry async for entry in store.outgoing_queue()]
        except StoreError as exc:
            log.warning("could not count the queue; trying again", store=name, error=str(exc))
            census.rescan_abandoned()
            self._rescan.add(name)
            return False
        census.rescanned(entries)
        return True

    async def _count_recipients(self, name: str) -> None:
        """The recipients of every message the count found, in one read, where the store can."""
        store, census = self.stores[name], self.census[name]
        if not isinstance(store, QueueCounter):
            return  # each is opened instead (``_read_unknown``)
        unread = census.unread()
        try:
            counts = await store.queued_recipients()
        except StoreError as exc:
            log.warning("could not count queued recipients", store=name, error=str(exc))
            return
        census.counted(unread, counts)

    async def _read_unknown(self, name: str) -> None:
        """Open each message whose recipients are not known, ``READS_AT_ONCE`` at a time."""
        unread = self.census[name].unread()
        failed: list[BaseException] = []
        for start in range(0, len(unread), READS_AT_ONCE):
            try:
                async with anyio.create_task_group() as tg:
                    for message_id, changes in unread[start : start + READS_AT_ONCE]:
                        tg.start_soon(self._read, name, message_id, changes)
            except* StoreError as group:
                failed.extend(group.exceptions)
            if failed:  # the store fails: the next count reads them
                log.warning("could not read queued messages", store=name, error=str(failed[0]))
                return

    async def _read(self, name: str, message_id: str, changes: int) -> None:
        census = self.census[name]
        try:
            message = await self.stores[name].open(message_id, Access.BEST)
        except (NotFound, NotInQueue):
            census.read(message_id, changes, None)
        except NoAccess:
            pass  # in an attempt: its end tells the census
        else:
            census.read(message_id, changes, message)
