"""How many messages and recipients wait in one store's outgoing queue, kept from events, not counted.

``spoolerctl status`` reads the whole queue to count it (hundreds of milliseconds at 20,000 queued), which a
scrape every 15 seconds must not do. A ``StoreCensus`` is counted once, by a re-scan (``rescanned``), and
then kept up to date by what already announces every change: the store's ``QueueChanged`` events (submit,
abort, hold, release, retry, finish), the ``accepted`` mail line (how many recipients a new message has)
and the spooler's ``deferred`` event after an attempt (how many recipients still wait). A message whose
recipients it has not been told of is read once (``unread`` / ``read``). No I/O happens here: the caller
(``QueueCensus``) feeds it, so the rules are tested in memory.

States, as Postfix names its queues: ``queued`` (waiting for its first attempt), ``deferred`` (an attempt
left recipients waiting), ``held`` (``spoolerctl hold``) and ``active`` (an attempt in flight now, told at
``count`` time by the spooler). A write by another process (a ``external`` event) is not one the census
can follow: it asks for a re-scan, and events that arrive while a re-scan reads the queue win over it.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from ..events import QueueChanged
from ..message import Message, QueueEntry, RecipientState
from ..store import QueuedRecipients

__all__ = ["QueueState", "Queued", "StoreCensus", "StoreCount"]


class QueueState(enum.StrEnum):
    QUEUED = "queued"
    DEFERRED = "deferred"
    HELD = "held"
    ACTIVE = "active"


@dataclass(slots=True)
class Queued:
    """What the census knows of one queued message."""

    submitted: float  # client submit time (or when the census heard of it)
    recipients: int | None = None  # without a final outcome; None: not known yet (``unread``)
    deferred: bool = False
    held: bool = False
    changes: int = 0  # events seen for it: a read begun before one of them is stale

    def state(self) -> QueueState:
        return QueueState.HELD if self.held else QueueState.DEFERRED if self.deferred else QueueState.QUEUED


@dataclass(frozen=True, slots=True)
class StoreCount:
    messages: dict[QueueState, int]
    recipients: dict[QueueState, int]
    oldest: float | None  # submit time of the message queued longest (None: the queue is empty)


# events that take a message off the queue, or put it on: they count even for a message the census does
# not know, so a re-scan that read the queue before them does not undo them
_MEMBERSHIP = frozenset({"submit", "abort", "finish"})


def _zero() -> dict[QueueState, int]:
    return dict.fromkeys(QueueState, 0)


@dataclass(slots=True)
class StoreCensus:
    messages: dict[str, Queued] = field(default_factory=dict)
    scanned: bool = False  # counted at least once
    # the totals by state, kept as each entry changes (a scrape never walks ``messages``)
    _by_state: dict[QueueState, int] = field(default_factory=_zero)
    _recipients: dict[QueueState, int] = field(default_factory=_zero)
    _oldest: list[tuple[float, str]] = field(default_factory=list)  # a heap; stale items skipped lazily
    _touched: set[str] | None = None  # while a re-scan reads the queue: ids events changed meanwhile

    # ------------------------------------------------------------------ events

    def changed(self, event: QueueChanged, now: float) -> bool:
        """Apply a store event; True when it cannot be followed and the queue must be re-scanned."""
        mid, reason = event.message_id, event.reason
        if mid is None:
            return reason != "reclaim"  # a reclaim only frees leases; anything else: look again
        entry = self.messages.get(mid)
        if self._touched is not None and (entry is not None or reason in _MEMBERSHIP):
            self._touched.add(mid)
        if entry is not None:
            entry.changes += 1
        if reason == "submit":
            if entry is None:
                self._add(mid, Queued(now))
        elif reason in ("abort", "finish"):
            self._remove(mid)
        elif entry is None:
            return False  # not one it knows (a re-scan under way will find it)
        elif reason in ("hold", "release"):
            self._tally(entry, -1)
            entry.held = reason == "hold"
            self._tally(entry, 1)
        elif reason == "retry":
            self._tally(entry, -1)
            entry.deferred = True
            self._tally(entry, 1)
        elif reason != "unlock":
            return True  # a reason this census does not know: count again rather than guess
        return False

    def announced(self, message_id: str, recipients: int) -> None:
        """The ``accepted`` line of a message just queued: how many recipients it has."""
        entry = self.messages.get(message_id)
        if entry is not None and entry.recipients is None:
            self._tally(entry, -1)
            entry.recipients = recipients
            self._tally(entry, 1)

    def attempted(self, message_id: str, waiting: int) -> None:
        """An attempt left ``waiting`` recipients deferred (the spooler's ``deferred`` event)."""
        entry = self.messages.get(message_id)
        if entry is not None:
            self._tally(entry, -1)
            entry.recipients, entry.deferred = waiting, True
            entry.changes += 1
            self._tally(entry, 1)

    # ------------------------------------------------------------------ reading what it does not know

    def unread(self) -> list[tuple[str, int]]:
        """Messages whose recipients are not known, each with its change count for ``read``."""
        return [(mid, e.changes) for mid, e in self.messages.items() if e.recipients is None]

    def read(self, message_id: str, changes: int, message: Message | None) -> None:
        """What an open found (None: the message is gone); ignored if an event came in between."""
        entry = self.messages.get(message_id)
        if entry is None or entry.changes != changes:
            return
        if message is None or not message.queued:
            self._remove(message_id)
            return
        waiting = [r for r in message.recipients if not r.state.final]
        deferred = message.next_attempt is not None or any(  # a retry was scheduled
            r.attempts or r.state is RecipientState.DEFERRED for r in waiting
        )
        self._learned(entry, len(waiting), deferred, message.held)
        if message.client_submit_time is not None and message.client_submit_time != entry.submitted:
            entry.submitted = message.client_submit_time
            heapq.heappush(self._oldest, (entry.submitted, message_id))

    def counted(self, unread: Iterable[tuple[str, int]], counts: Iterable[QueuedRecipients]) -> None:
        """What a store's ``queued_recipients`` said of the messages ``unread`` listed (with their change
        counts, taken before the read); a message it does not name is read as it left the queue."""
        by_id = {c.message_id: c for c in counts}
        for message_id, changes in unread:
            entry = self.messages.get(message_id)
            if entry is None or entry.changes != changes:
                continue
            count = by_id.get(message_id)
            if count is None:
                self._remove(message_id)
            else:
                self._learned(entry, count.waiting, count.deferred, entry.held)

    def _learned(self, entry: Queued, waiting: int, deferred: bool, held: bool) -> None:
        self._tally(entry, -1)
        entry.recipients, entry.deferred, entry.held = waiting, deferred, held
        self._tally(entry, 1)

    # ------------------------------------------------------------------ re-scan

    def rescan_begun(self) -> None:
        self._touched = set()

    def rescan_abandoned(self) -> None:
        """The re-scan could not read the queue: what events said stands."""
        self._touched = None

    def rescanned(self, entries: Iterable[QueueEntry]) -> None:
        """The queue as a re-scan read it: the messages it holds now, and what events said meanwhile."""
        touched, self._touched = self._touched or set(), None
        fresh: dict[str, Queued] = {}
        for e in entries:
            if e.id in touched:
                continue
            known = self.messages.get(e.id)
            fresh[e.id] = known if known is not None else Queued(e.client_submit_time, held=e.held)
            fresh[e.id].held = e.held
        for mid in touched:
            if mid in self.messages:
                fresh[mid] = self.messages[mid]
        self.messages = fresh
        self._by_state, self._recipients = _zero(), _zero()
        for entry in fresh.values():
            self._tally(entry, 1)
        self._oldest = [(e.submitted, mid) for mid, e in fresh.items()]
        heapq.heapify(self._oldest)
        self.scanned = True

    # ------------------------------------------------------------------ counting

    def count(self, active: Collection[str]) -> StoreCount:
        """The counts by state; ``active``: the ids of this store's attempts in flight now."""
        messages, recipients = dict(self._by_state), dict(self._recipients)
        for mid in active:
            entry = self.messages.get(mid)
            if entry is not None and not entry.held:
                state = entry.state()
                messages[state] -= 1
                recipients[state] -= entry.recipients or 0
                messages[QueueState.ACTIVE] += 1
                recipients[QueueState.ACTIVE] += entry.recipients or 0
        return StoreCount(messages, recipients, self._oldest_time())

    def _oldest_time(self) -> float | None:
        heap = self._oldest
        while heap:
            submitted, mid = heap[0]
            entry = self.messages.get(mid)
            if entry is not None and entry.submitted == submitted:
                return submitted
            heapq.heappop(heap)
        return None

    def _tally(self, entry: Queued, sign: int) -> None:
        state = entry.state()
        self._by_state[state] += sign
        self._recipients[state] += sign * (entry.recipients or 0)

    def _remove(self, message_id: str) -> None:
        entry = self.messages.pop(message_id, None)
        if entry is not None:
            self._tally(entry, -1)

    def _add(self, message_id: str, entry: Queued) -> None:
        self.messages[message_id] = entry
        self._tally(entry, 1)
        heapq.heappush(self._oldest, (entry.submitted, message_id))
        if len(self._oldest) > 2 * len(self.messages) + 1024:  # many removed out of order: rebuild
            self._oldest = [(e.submitted, mid) for mid, e in self.messages.items()]
            heapq.heapify(self._oldest)
