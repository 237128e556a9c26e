"""``subscribe``: the spooler's and the stores' events streamed to a control client as JSON objects."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import anyio

from ..events import EventHub, NewMail, QueueChanged, SpoolerEvent, StoreEvent, Subscription
from ..message import flag_names
from ..store import MessageStore
from .results import ControlEvent, NewMailEvent, Overflow, QueueChangedEvent, Subscribed

__all__ = ["SUBSCRIBER_BACKLOG", "stream_events"]


def _control_event(event: SpoolerEvent | StoreEvent, store: str | None) -> ControlEvent | None:
    """What a subscriber is sent of an event (None: another store's, and it asked for one)."""
    if isinstance(event, QueueChanged):
        return QueueChangedEvent(
            type="queue_changed", store=event.store, reason=event.reason, id=event.message_id
        )
    if isinstance(event, NewMail):
        return NewMailEvent({"type": "new_mail", "store": event.store, "id": event.message_id,
                             "folder": event.folder_id, "class": event.message_class,
                             "flags": flag_names(event.flags)})  # fmt: skip
    fields: Mapping[str, object] = event
    if store is not None and fields.get("store") not in (None, store):
        return None  # another store's delivery or purge (a transport's state concerns every store)
    return event


SUBSCRIBER_BACKLOG = 10_000  # events a control client may fall behind before its stream is ended


async def stream_events(
    spooler_events: EventHub[SpoolerEvent],
    stores: Mapping[str, MessageStore],
    only: str | None,
    send_event: Callable[[ControlEvent], Awaitable[None]],
    closed: anyio.Event,
) -> None:
    """Send the spooler's events and those of ``stores`` (``only`` that store's, if named) until
    ``closed`` is set: the client hung up, or fell too far behind reading them."""

    async def forward(sub: Subscription[SpoolerEvent] | Subscription[StoreEvent]) -> None:
        async for event in sub:
            payload = _control_event(event, only)
            if payload is not None:
                await send_event(payload)
        if sub.overflowed:
            await send_event(Overflow(type="overflow", message="events were dropped; subscribe again"))
        closed.set()  # the stream ended: so does the subscription

    subscriptions: list[Subscription[SpoolerEvent] | Subscription[StoreEvent]] = []
    try:  # every subscription is closed again, however the client leaves
        subscriptions.append(spooler_events.subscribe(SUBSCRIBER_BACKLOG))
        subscriptions += [store.subscribe(SUBSCRIBER_BACKLOG) for store in stores.values()]
        await send_event(Subscribed(type="subscribed", stores=list(stores)))
        async with anyio.create_task_group() as tg:
            for sub in subscriptions:
                tg.start_soon(forward, sub)
            await closed.wait()
            tg.cancel_scope.cancel()
    finally:
        for sub in subscriptions:
            sub.close()
