"""Store conformance: what the queue, lease and outcome tests share (a message in the outbox, queued,
the queue's ids, the store's own next event)."""

from __future__ import annotations

from spoolerd.events import QueueChanged, StoreEvent, Subscription
from spoolerd.message import Draft, FolderRole, NewRecipient
from spoolerd.store import MessageStore

CONTENT = b"Subject: queued\r\n\r\nbody\r\n"


async def new_message(store: MessageStore, *recipients: str, **kw: object) -> str:
    outbox = await store.folder(FolderRole.OUTBOX)
    rcpts = [NewRecipient(r) for r in recipients or ("b@example.org",)]
    return await store.create_message(outbox.id, Draft(CONTENT, rcpts, **kw))  # type: ignore[arg-type]


async def queued(store: MessageStore, *recipients: str, **kw: object) -> str:
    mid = await new_message(store, *recipients, **kw)
    await store.submit(mid)
    return mid


async def own_event(events: Subscription[StoreEvent]) -> StoreEvent:
    """The next event the store announces for its own change: an ``external`` one (a watcher noticing a
    write, which under load may be the store's own commit) says nothing about it and is skipped."""
    while True:
        event = await events.receive()
        if not (isinstance(event, QueueChanged) and event.reason == "external"):
            return event


async def queue_ids(store: MessageStore, **kw: object) -> list[str]:
    return [e.id async for e in store.outgoing_queue(**kw)]  # type: ignore[arg-type]
