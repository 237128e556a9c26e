"""The spooler: watches every store's outgoing queue and keeps delivery attempts running.

It sleeps until something can be done: a queue change announced by a store, a finished attempt that
frees capacity, a flush, or the next due time from the stores (``next_due``). It never polls. Each
wake-up scans the due head of each queue (in due order, from its due index) and starts attempts up to
the global in-flight limit; a message whose transport is slow holds only its own slot, never the queue.

Shutdown is two-phase (``shutdown``): stop starting attempts, let those in flight finish within a
deadline, then cancel the rest, whose locks are released as they unwind.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Collection, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus

from .abilities import Downloading
from .claims import DueClaims
from .delivery import AttemptResult, Dispatcher
from .downloads import Downloads
from .errors import StoreError
from .events import EventHub, QueueChanged, SpoolerEvent, StoreEvent, Subscription
from .flush import FlushView, flushing, waits_on
from .health import StoreHealth
from .message import Message
from .resource_state import ResourceState, StatusChanges
from .spooler_results import Counters, FlushDeferral, FlushResult, delivery_events
from .store import Clock, MessageStore

__all__ = ["Counters", "FlushDeferral", "FlushResult", "Spooler"]

log = structlog.get_logger("spoolerd.spooler")

# Queue changes the spooler itself causes; waking up for them would only rescan for nothing.
_OWN_REASONS = frozenset({"finish", "retry", "unlock"})


def _wakes(event: StoreEvent) -> bool:
    """A store event that may make something due: not new mail, and not the spooler's own doing."""
    return isinstance(event, QueueChanged) and event.reason not in _OWN_REASONS


@dataclass(slots=True)
class _Flight:
    """One attempt, queued for a worker or running, and what it came to once ``done``."""

    store_name: str
    store: MessageStore
    message_id: str
    force: bool = False  # a forced flush: even past destinations marked down
    view: FlushView | None = None  # started by a plain flush: how it sees the destination cache
    claimed: Message | None = None  # locked already, by a claim of the due head
    reclaimed: bool = False  # a claim leased it again meanwhile: handed back when the attempt ends
    done: asyncio.Event = field(default_factory=asyncio.Event)  # asyncio's: one per attempt, cheaper
    result: AttemptResult | None = None


class Spooler:
    def __init__(
        self,
        stores: Mapping[str, MessageStore],
        dispatcher: Dispatcher,
        *,
        max_in_flight: int = 64,
        clock: Clock,
    ) -> None:
        self.stores = dict(stores)
        self._claims = DueClaims(self.stores, dispatcher)  # the stores that lease the due head in batches
        self.dispatcher = dispatcher
        self.max_in_flight = max_in_flight
        # a flush (the daemon's alone: workers claim only what is due) may go past a daemon's small
        # share of max_in_flight, up to this (an equal share: ``SpoolerSection.equal_share``)
        self.flush_in_flight = max_in_flight
        self.clock = clock
        self.counters = Counters()
        self.loop_iterations = 0  # scheduler wake-ups: an idle daemon must not add to them
        self._in_flight: dict[tuple[str, str], _Flight] = {}
        self._wake = anyio.Event()
        self._freed = asyncio.Event()
        self._dirty = True
        self._stopping = False
        self._tg: TaskGroup | None = None
        self._work: asyncio.Queue[_Flight] = asyncio.Queue()
        self._idle_workers = 0
        self.parked = anyio.Event()  # set while asleep with nothing in flight and nothing due
        self.events: EventHub[SpoolerEvent] = EventHub()  # delivered/deferred/failed, status changes
        self.health = StoreHealth(list(self.stores), clock, self.events.publish)
        dispatcher.publish = self.events.publish  # a transport going down or up again
        self.status = StatusChanges(clock, self.events.publish)  # each row's state, as it changes
        self.resource = ResourceState("spooler", "spooler")  # active while attempts are in flight
        # cancelled first at shutdown; a downloading transport's row follows its downloads
        self.downloads = Downloads(self.stores, self.counters, self.status, self._transport_row)
        # told of every attempt as it ends: the store, the message and the seconds it took (metrics)
        self.attempt_observers: list[Callable[[str, str, float], None]] = []
        self.receives = True  # False: a delivery worker's, which leaves downloads to the daemon

    # ------------------------------------------------------------------ running

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until ``shutdown``; ``task_status.started()`` once every queue is watched."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self.dispatcher.leases.renew)
            for store in self.stores.values():
                tg.start_soon(self._watch, store.subscribe(accept=_wakes))
            for slot in self.dispatcher.transports:
                if slot.downloader is not None and self.receives:
                    self.downloads.start(tg, slot.name, slot.downloader)
            task_status.started()
            await self._schedule()
            # stopping: intake is over; attempts in flight finish (``shutdown`` cancels at its deadline)
            while self._in_flight:
                await next(iter(self._in_flight.values())).done.wait()
            tg.cancel_scope.cancel()

    def set_online(self, transport: str, online: bool) -> None:
        """Take a transport online or offline (its messages wait meanwhile), as an operator asked: a
        status change event and one line (the daemon's, and each delivery worker's, which carries
        ``worker``)."""
        slot = self.dispatcher.slot(transport)
        if slot is None:
            raise KeyError(transport)
        self.status.set_online(slot.resource, online)
        log.info("transport online" if online else "transport offline", transport=transport)
        if online:
            self.wake()

    def _transport_row(self, name: str) -> ResourceState | None:
        slot = self.dispatcher.slot(name)
        return None if slot is None else slot.resource

    def wake(self) -> None:
        """Rescan the queues at once (a queue changed, or a flush asked)."""
        self._dirty = True
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def in_flight_ids(self) -> list[tuple[str, str]]:
        """(store, message id) of each attempt in flight now (at most ``max_in_flight``)."""
        return list(self._in_flight)

    def in_flight_now(self) -> list[asyncio.Event]:
        """The end of each attempt in flight now: a reload waits for them before it stops the transports
        those attempts may still be using."""
        return [flight.done for flight in self._in_flight.values()]

    async def shutdown(self, deadline: float = 30.0) -> None:
        """Stop starting attempts, give those in flight ``deadline`` seconds, then cancel them."""
        self._stopping = True
        self.downloads.stop_all()  # no more downloads
        self._wake.set()
        with anyio.move_on_after(deadline):
            for flight in list(self._in_flight.values()):
                await flight.done.wait()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
        while not self._work.empty():  # queued, never begun: a claimed one is handed back
            flight = self._work.get_nowait()
            if flight.claimed is not None or flight.reclaimed:
                with anyio.CancelScope(shield=True):
                    await self.dispatcher.hand_back(flight.store, flight.message_id)
            self._in_flight.pop((flight.store_name, flight.message_id), None)
            flight.done.set()
        with anyio.CancelScope(shield=True):  # the cancelled attempts hand their messages back first
            for flight in list(self._in_flight.values()):
                await flight.done.wait()

    async def _watch(self, events: Subscription[StoreEvent]) -> None:
        async with events:
            async for _ in events:  # only what _wakes let through
                self.wake()

    async def _schedule(self) -> None:
        while not self._stopping:
            self._wake = anyio.Event()
            skipped = False
            self.loop_iterations += 1
            if self._dirty:
                self._dirty = False
                skipped = await self._dispatch_due()
            if skipped and self._in_flight and not self.health.any_failing():
                next_due = None  # due mail waits for a slot: only an attempt's end can start more
            else:
                next_due = await self._next_due()
            now = self.clock()
            if next_due is None or (skipped and next_due <= now):
                timeout = math.inf  # a finished attempt or a queue change will wake us
            else:
                timeout = max(0.0, next_due - now)
            if timeout == math.inf and not self._in_flight:
                self.parked.set()
            with anyio.move_on_after(timeout) as scope:
                await self._wake.wait()
            if self.parked.is_set():
                self.parked = anyio.Event()
            if scope.cancelled_caught:
                self._dirty = True  # something came due

    async def _next_due(self) -> float | None:
        """The earliest due time of every store; a failing store's not before its wait is over."""
        times = []
        for name, store in self.stores.items():
            try:
                due = self.clock() if self._claims.unanswered(name) else await store.next_due()
            except Exception as exc:
                self._store_failed(name, exc)
                due = self.clock()
            if due is not None:
                times.append(max(due, self.clock() + self.health.wait(name)))
        return min(times) if times else None

    async def _dispatch_due(self) -> bool:
        """Start attempts for due messages, earliest due first; True when a due message had to wait."""
        now = self.clock()
        skipped = False
        for name, store in self.stores.items():
            if self.health.wait(name):
                continue  # failing: left alone until its wait is over (``_next_due`` wakes us then)
            try:
                await self.dispatcher.settle_unlocks(store)
                if self._claims.claims(name):
                    if await self._claim_due(name, store):
                        return True
                    continue
                async for entry in store.outgoing_queue(due_at=now, include_locked=False):
                    if (name, entry.id) in self._in_flight:
                        skipped = True
                        continue
                    if len(self._in_flight) >= self.max_in_flight or self._stopping:
                        return True
                    self._start(name, store, entry.id, force=False)
            except Exception as exc:
                self._store_failed(name, exc)
        return skipped

    def _store_failed(self, name: str, exc: Exception) -> None:
        """A store call of the scheduler's failed: the store waits (``health``) and the scheduler goes on.
        Anything but a StoreError is a store plugin's bug: its traceback is logged, and it is not fatal."""
        if not isinstance(exc, StoreError):
            log.error("store call failed unexpectedly", store=name, exc_info=exc)
        self.health.failed(name, exc)

    async def _claim_due(self, name: str, store: MessageStore) -> bool:
        """Lease the due head of ``store`` in one batch up to the free slots (``claims``) and start an
        attempt for each; True when due messages may be left for lack of slots. With attempts in
        flight, a batch waits until a quarter of the slots is free (their ends wake the spooler): one
        claim for many messages rather than one per finished attempt."""
        free = self.max_in_flight - len(self._in_flight)
        if self._stopping or (self._in_flight and free < max(1, self.max_in_flight // 4)):
            return True
        # shielded: a store may commit a claim whose caller was cancelled (a shutdown), and a batch
        # answered once shutdown has begun is never started; either way it is handed back, not left leased
        with anyio.CancelScope(shield=True):
            claimed = await self._claims.claim(name, store, free, lambda mid: (name, mid) in self._in_flight)
            for message in claimed:
                running = self._in_flight.get((name, message.id))
                if running is not None:  # its attempt may have handed it back (due at once): ours again
                    running.reclaimed = True
                elif self._stopping:
                    await self.dispatcher.hand_back(store, message.id)
                else:
                    self._start(name, store, message.id, force=False, claimed=message)
        return self._stopping or len(claimed) == free

    def _start(
        self,
        name: str,
        store: MessageStore,
        message_id: str,
        *,
        force: bool,
        view: FlushView | None = None,
        claimed: Message | None = None,
    ) -> _Flight:
        """Start an attempt, or join the one already running: one attempt per message at a time (the
        lock is re-entrant for this spooler's owner, so the store would not stop a second one)."""
        assert self._tg is not None, "the spooler is not running"
        running = self._in_flight.get((name, message_id))
        if running is not None:
            return running
        flight = _Flight(name, store, message_id, force, view, claimed)
        if self._stopping:  # shutting down: its workers may be cancelled already, so nothing starts
            flight.done.set()
            return flight
        self._in_flight[(name, message_id)] = flight
        self.status.begin(self.resource)
        self._work.put_nowait(flight)
        if self._work.qsize() > self._idle_workers:  # nobody free to take it: one more worker
            self._tg.start_soon(self._worker)
        return flight

    async def _worker(self) -> None:
        """Runs attempts one after another. Workers stay once started (about as many as were ever busy
        at once), because starting an attempt in a waiting worker costs less than
        spawning a task for each; they end with the task group."""
        while True:
            self._idle_workers += 1
            try:
                flight = await self._work.get()
            finally:
                self._idle_workers -= 1
            await self._attempt(flight)

    async def _attempt(self, flight: _Flight) -> None:
        name, message_id = flight.store_name, flight.message_id
        began = time.monotonic()
        try:
            with flushing(flight.view):
                flight.result = await self.dispatcher.attempt(
                    flight.store, message_id, force=flight.force, claimed=flight.claimed
                )
                flight.claimed = None  # the attempt's now, whatever became of it
        except StoreError as exc:  # the store, not the message: one line per state change, and a wait
            self.health.failed(name, exc)
        except Exception:
            log.exception("delivery attempt failed", store=name, message=message_id)
        else:
            self.health.succeeded(name)
        finally:
            if flight.reclaimed:  # still in flight, so no other attempt of ours takes it meanwhile
                with anyio.CancelScope(shield=True):
                    await self.dispatcher.hand_back(flight.store, message_id)
            if self._in_flight.get((name, message_id)) is flight:
                del self._in_flight[(name, message_id)]
                self.status.end(self.resource)
            if flight.result is not None:
                for observe in self.attempt_observers:
                    observe(name, message_id, time.monotonic() - began)
                self.counters.delivered += flight.result.delivered
                self.counters.deferred += flight.result.deferred
                self.counters.failed += flight.result.failed
                for event in delivery_events(name, message_id, flight.result, self.clock):
                    self.events.publish(event)
            flight.done.set()
            self._freed.set()
            self._freed = asyncio.Event()
            self.wake()

    # ------------------------------------------------------------------ flush (FlushQueues, upload)

    def spawn(self, fn: Callable[[], Coroutine[Any, Any, object]]) -> None:
        """Run ``fn`` in the spooler's task group (a flush answered before it is over)."""
        assert self._tg is not None, "the spooler is not running"
        self._tg.start_soon(fn)

    async def flush(
        self,
        *,
        force: bool = False,
        message_ids: Collection[str] | None = None,
        transport: str | None = None,
        due_only: bool = False,
    ) -> FlushResult:
        """Attempt every queued message now, as ``postqueue -f`` does: deferred ones not yet due and
        those behind a destination marked down included, held ones and those whose deferred send time
        is still ahead not (see ``spoolerd.flush`` for how a destination found down again during the
        flush is treated, and what ``force`` adds). Waits for those attempts; counts are per
        recipient, with each deferral's reason. ``transport`` flushes that transport's queue only
        (FlushQueues' target transport); ``due_only`` attempts only what the scheduler would now."""
        wanted = None if message_ids is None else set(message_ids)
        flights: list[tuple[str, str, _Flight]] = []
        now = self.clock()
        view = None if force or due_only else FlushView()
        named = [(s.name, s.address_types) for s in self.dispatcher.transports]
        for name, store in self.stores.items():
            async for entry in store.outgoing_queue(due_at=now if due_only else None, include_locked=True):
                if wanted is not None and entry.id not in wanted:
                    continue
                if entry.held or (entry.not_before is not None and entry.not_before > now):
                    continue  # a flush passes over backoff, never a hold or a deferred send time
                if transport is not None and not await waits_on(
                    store, entry.id, transport, named, self.dispatcher.settings.sender_routes
                ):
                    continue
                if (name, entry.id) not in self._in_flight and entry.lock_owner not in (
                    None,
                    self.dispatcher.owner,
                ):
                    continue  # another spooler's
                limit = max(self.max_in_flight, self.flush_in_flight)
                while (name, entry.id) not in self._in_flight and len(self._in_flight) >= limit:
                    await self._freed.wait()
                flights.append((name, entry.id, self._start(name, store, entry.id, force=force, view=view)))
        result = FlushResult()
        for name, message_id, flight in flights:
            await flight.done.wait()
            result.add(name, message_id, flight.result)
        return result

    # ------------------------------------------------------------------ inbound

    def start_receiving(self, name: str, transport: Downloading) -> None:
        """Run a transport's download loop (one that a reload added or replaced)."""
        assert self._tg is not None, "the spooler is not running"
        if self.receives:
            self.downloads.start(self._tg, name, transport)

    async def download_now(self, name: str, transport: Downloading) -> int:
        """Flush a downloading transport that has no flush of its own (``Downloads.download_now``) within
        the send timeout; how many messages it handed over meanwhile."""
        assert self._tg is not None, "the spooler is not running"
        before = self.downloads.received[name]
        with anyio.move_on_after(self.dispatcher.settings.send_timeout):
            await self.downloads.download_now(self._tg, name, transport)
        return self.downloads.received[name] - before

    def stop_receiving(self, name: str) -> None:
        """End a transport's download loop (a reload removes or replaces the transport)."""
        self.downloads.stop(name)
