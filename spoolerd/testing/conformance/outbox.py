"""The event outbox (``spoolerd.outbox``), for a store that has it: events committed with the outcomes
they tell of (and not without them), read in order per webhook under one sender's lease, deleted once
acknowledged, durable, and a backlog trimmed from its oldest end."""

from __future__ import annotations

import pytest

from spoolerd.errors import LockLost, NoSupport
from spoolerd.message import Draft, FolderRole, NewRecipient, RecipientState, RecipientUpdate
from spoolerd.outbox import EventOutbox, OutboxEvent
from spoolerd.store import MessageStore
from spoolerd.testing import FakeClock, StoreFactory

DELIVERED = RecipientUpdate(0, RecipientState.DELIVERED, "smtp", 250, "2.0.0", "ok")


def outbox_of(store: MessageStore) -> EventOutbox:
    if not isinstance(store, EventOutbox):
        pytest.skip("this store keeps no event outbox (an optional ability)")
    return store


async def locked_message(store: MessageStore) -> str:
    outbox = await store.folder(FolderRole.OUTBOX)
    mid = await store.create_message(
        outbox.id, Draft(b"Subject: e\r\n\r\nx\r\n", [NewRecipient("b@example.org")])
    )
    await store.submit(mid)
    await store.lock(mid, "spooler", 60)
    return mid


def events(mid: str, *bodies: bytes, webhook: str = "app") -> list[OutboxEvent]:
    return [OutboxEvent(webhook, mid, body) for body in bodies]


async def payloads(outbox: EventOutbox, webhook: str = "app", owner: str = "d1") -> list[bytes]:
    claim = await outbox.outbox_claim(webhook, owner=owner, lease=30, limit=100, keep=1000)
    return [e.payload for e in claim.events]


async def test_events_commit_with_the_outcomes_in_order(store: MessageStore) -> None:
    outbox = outbox_of(store)
    mid = await locked_message(store)
    deferred = RecipientUpdate(0, RecipientState.DEFERRED, "smtp", 451, "4.3.0", "later", 1e10)
    await outbox.record_outcomes(mid, "spooler", [deferred], events=events(mid, b"1", b"2"))
    await outbox.record_outcomes(mid, "spooler", [], delay_reported=True, events=events(mid, b"3"))
    await outbox.finish(
        mid, "spooler", outcomes=[DELIVERED], events=[*events(mid, b"4"), *events(mid, b"x", webhook="b")]
    )
    assert await payloads(outbox) == [b"1", b"2", b"3", b"4"]
    assert await payloads(outbox, "b") == [b"x"]
    claim = await outbox.outbox_claim("app", owner="d1", lease=30, limit=2, keep=1000)
    assert [e.message_id for e in claim.events] == [mid, mid] and claim.backlog == 4


async def test_no_event_without_its_outcome(store: MessageStore) -> None:
    outbox = outbox_of(store)
    mid = await locked_message(store)
    with pytest.raises(LockLost):
        await outbox.record_outcomes(mid, "another", [DELIVERED], events=events(mid, b"lost"))
    with pytest.raises(NoSupport):  # finish: only the lock's holder may
        await outbox.finish(mid, "another", outcomes=[DELIVERED], events=events(mid, b"lost"))
    assert await payloads(outbox) == []


async def test_acknowledged_events_are_deleted_and_the_rest_survive_a_restart(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory.open()
    outbox = outbox_of(store)
    mid = await locked_message(store)
    await outbox.finish(mid, "spooler", outcomes=[DELIVERED], events=events(mid, b"1", b"2", b"3"))
    claim = await outbox.outbox_claim("app", owner="d1", lease=30, limit=10, keep=1000)
    await outbox.outbox_ack("app", [claim.events[0].seq, 10**12], owner="d1", lease=30)
    await store_factory.close(store)
    again = outbox_of(await store_factory.open())
    assert await payloads(again) == [b"2", b"3"]


async def test_one_sender_at_a_time_until_its_lease_expires(store: MessageStore, clock: FakeClock) -> None:
    outbox = outbox_of(store)
    mid = await locked_message(store)
    await outbox.finish(mid, "spooler", outcomes=[DELIVERED], events=events(mid, b"1", b"2"))
    first = await outbox.outbox_claim("app", owner="d1", lease=30, limit=1, keep=1000)
    assert [e.payload for e in first.events] == [b"1"] and first.held_until is None
    other = await outbox.outbox_claim("app", owner="d2", lease=30, limit=10, keep=1000)
    assert other.events == [] and other.held_until == clock.now + 30
    clock.advance(20)
    await outbox.outbox_ack("app", [first.events[0].seq], owner="d1", lease=30)  # renews the lease
    clock.advance(20)
    assert (await outbox.outbox_claim("app", owner="d2", lease=30, limit=10, keep=1000)).held_until
    clock.advance(11)  # d1 died: its lease expired
    assert await payloads(outbox, owner="d2") == [b"2"]


async def test_a_sender_finding_nothing_or_backing_off_lets_another_send(store: MessageStore) -> None:
    outbox = outbox_of(store)
    assert (await outbox.outbox_claim("app", owner="d1", lease=30, limit=10, keep=1000)).events == []
    mid = await locked_message(store)
    await outbox.finish(mid, "spooler", outcomes=[DELIVERED], events=events(mid, b"1"))
    assert await payloads(outbox, owner="d2") == [b"1"]  # d1 found it empty and gave it up
    await outbox.outbox_release("app", "d2")
    assert await payloads(outbox, owner="d1") == [b"1"]


async def test_the_backlog_loses_its_oldest_events_over_the_bound(store: MessageStore) -> None:
    outbox = outbox_of(store)
    mid = await locked_message(store)
    await outbox.finish(
        mid, "spooler", outcomes=[DELIVERED], events=events(mid, *(b"%d" % i for i in range(10)))
    )
    trimmed = await outbox.outbox_claim("app", owner="d1", lease=30, limit=0, keep=4)
    assert (trimmed.dropped, trimmed.backlog, trimmed.events) == (6, 4, [])
    again = await outbox.outbox_claim("app", owner="d1", lease=30, limit=10, keep=4)
    assert again.dropped == 0 and [e.payload for e in again.events] == [b"6", b"7", b"8", b"9"]
