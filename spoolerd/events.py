"""Store events and the hub that fans them out to waiters, so nobody has to poll a store.

A store publishes ``QueueChanged`` whenever its outgoing queue changes (submit, abort, finish, an unlock
that schedules a retry, or a write by another process) and ``NewMail`` when a message lands in a receive
folder (MAPI's fnevNewMail). Subscribers each get their own unbounded stream: events are small and the
consumers (the spooler, control-socket watchers) drain them promptly.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, Literal, TypedDict, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .message import MessageFlag

__all__ = [
    "DeliveryEvent",
    "EventHub",
    "NewMail",
    "Purged",
    "QueueChanged",
    "RecipientDetail",
    "SpoolerEvent",
    "StatusChanged",
    "StoreEvent",
    "Subscription",
]


@dataclass(frozen=True, slots=True)
class QueueChanged:
    store: str
    reason: str  # submit, abort, finish, retry, unlock, external, ...
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class NewMail:
    store: str
    message_id: str
    folder_id: str
    message_class: str
    flags: MessageFlag


StoreEvent = QueueChanged | NewMail


# The spooler's own events (``Spooler.events``), streamed as they are by the control socket's
# ``subscribe``: one JSON object each, keyed by ``type``.


class RecipientDetail(TypedDict):
    """One recipient of a delivery event: what ``spoolerctl watch`` prints."""

    recipient: str
    transport: str | None
    code: int | None
    status: str | None
    reason: str | None
    next_attempt: float | None


class DeliveryEvent(TypedDict):
    """An attempt ended with ``recipients`` recipients in state ``type``."""

    type: Literal["delivered", "deferred", "failed"]
    store: str
    id: str
    recipients: int
    time: float
    details: list[RecipientDetail]


class StatusChanged(TypedDict):
    """A status row's state changed (spoolerd/resource_state.py): taken online or offline, work begun
    or over, something failing (``last_error`` says what) or answering again."""

    type: Literal["status_changed"]
    entry_id: str  # the row's: spooler, store:NAME, transport:NAME
    resource_type: str
    name: str
    state: Literal["online", "offline", "active", "flushing", "failing"]
    was: str  # the state before
    last_error: str | None  # failing: why
    since: float


class Purged(TypedDict):
    """Sent Items retention deleted ``count`` messages."""

    type: Literal["purged"]
    store: str
    folder: str
    count: int


SpoolerEvent = DeliveryEvent | StatusChanged | Purged
E = TypeVar("E")


class Subscription(Generic[E]):
    """A stream of events from the moment of subscribing; use as ``async with hub.subscribe() as sub``."""

    def __init__(
        self, hub: EventHub[E], limit: float = math.inf, accept: Callable[[E], bool] | None = None
    ) -> None:
        self._hub = hub
        self._accept = accept  # events it turns down are never queued (nor wake the reader)
        send, receive = anyio.create_memory_object_stream[E](limit)
        self._send: MemoryObjectSendStream[E] = send
        self._receive: MemoryObjectReceiveStream[E] = receive
        self.overflowed = False  # a bounded subscriber fell too far behind: its stream was ended

    def _push(self, event: E) -> None:
        if self._accept is not None and not self._accept(event):
            return
        try:
            self._send.send_nowait(event)
        except anyio.WouldBlock:
            self.overflowed = True
            self._hub._subscribers.discard(self)
            self._send.close()  # the reader sees the end of the stream after what it already has

    async def receive(self) -> E:
        return await self._receive.receive()

    def pending(self) -> list[E]:
        """Every event already waiting, without blocking (lets a waiter coalesce a burst)."""
        out: list[E] = []
        while True:
            try:
                out.append(self._receive.receive_nowait())
            except anyio.WouldBlock:
                return out

    def close(self) -> None:
        self._hub._subscribers.discard(self)
        self._send.close()
        self._receive.close()

    def __aiter__(self) -> AsyncIterator[E]:
        return self._receive.__aiter__()

    async def __aenter__(self) -> Subscription[E]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class EventHub(Generic[E]):
    """Fans events out to every current subscriber (stores publish StoreEvents; the spooler,
    SpoolerEvents)."""

    def __init__(self) -> None:
        self._subscribers: set[Subscription[E]] = set()

    def subscribe(
        self, limit: float = math.inf, accept: Callable[[E], bool] | None = None
    ) -> Subscription[E]:
        """A new stream of events; with a ``limit``, a subscriber that falls that far behind is cut off
        (for consumers the daemon does not control, such as control-socket clients); with ``accept``,
        only the events it approves."""
        sub = Subscription(self, limit, accept)
        self._subscribers.add(sub)
        return sub

    def publish(self, event: E) -> None:
        for sub in tuple(self._subscribers):
            sub._push(event)

    def close(self) -> None:
        """End every subscriber's stream: their ``async for`` loops finish normally."""
        for sub in tuple(self._subscribers):
            sub._send.close()
        self._subscribers.clear()
