"""``queued_recipients`` (the QueueCounter ability) of every shipped store says what opening each queued
message says, as the census reads it; a census counted with it matches one counted by opening."""

from __future__ import annotations

import anyio

from spoolerd.message import Access, Draft, FolderRole, NewRecipient, RecipientState, RecipientUpdate
from spoolerd.metrics.census import QueueState, StoreCensus
from spoolerd.store import MessageStore, QueueCounter, QueuedRecipients

CONTENT = b"Subject: counted\r\n\r\nbody\r\n"
OWNER = "counter-test"


async def queued(store: MessageStore, *recipients: str) -> str:
    outbox = await store.folder(FolderRole.OUTBOX)
    return await store.submit_new(outbox.id, Draft(CONTENT, [NewRecipient(r) for r in recipients]))


async def test_queued_recipients_agrees_with_open(store: MessageStore) -> None:
    assert isinstance(store, QueueCounter)
    fresh = await queued(store, "a@x.org", "b@x.org", "c@x.org")
    partly = await queued(store, "a@x.org", "b@x.org", "c@x.org")  # one sent, one bounced, one deferred
    await store.lock(partly, OWNER, 60)
    await store.record_outcomes(partly, OWNER, [
        RecipientUpdate(0, RecipientState.DELIVERED, "t", 250, "2.0.0", "ok"),
        RecipientUpdate(1, RecipientState.FAILED, "t", 550, "5.1.1", "no"),
        RecipientUpdate(2, RecipientState.DEFERRED, "t", 451, "4.1.1", "later", 2e9),
    ])  # fmt: skip
    await store.unlock(partly, OWNER, retry_at=2e9)
    untried = await queued(store, "a@x.org")  # behind a dead destination: a retry, no outcome
    await store.lock(untried, OWNER, 60)
    await store.unlock(untried, OWNER, retry_at=2e9)
    held = await queued(store, "a@x.org", "b@x.org")
    await store.hold(held)
    done = await queued(store, "a@x.org")
    await store.lock(done, OWNER, 60)
    await store.finish(done, OWNER, outcomes=[RecipientUpdate(0, RecipientState.DELIVERED, "t", 250)])
    outbox = await store.folder(FolderRole.OUTBOX)
    await store.create_message(outbox.id, Draft(CONTENT, [NewRecipient("d@x.org")]))  # a draft: not queued

    counts = sorted(await store.queued_recipients(), key=lambda c: int(c.message_id))
    assert counts == [
        QueuedRecipients(fresh, 3, False),
        QueuedRecipients(partly, 1, True),
        QueuedRecipients(untried, 1, True),
        QueuedRecipients(held, 2, False),
    ]

    # the two ways of learning a queue's recipients agree
    by_count, by_open = StoreCensus(), StoreCensus()
    entries = [e async for e in store.outgoing_queue()]
    for census in (by_count, by_open):
        census.rescan_begun()
        census.rescanned(entries)
    by_count.counted(by_count.unread(), counts)
    for message_id, changes in by_open.unread():
        by_open.read(message_id, changes, await store.open(message_id, Access.BEST))
    assert by_count.count(()) == by_open.count(())
    assert by_count.count(()).messages == {
        QueueState.QUEUED: 1, QueueState.DEFERRED: 2, QueueState.HELD: 1, QueueState.ACTIVE: 0
    }  # fmt: skip
    assert by_count.count(()).recipients[QueueState.DEFERRED] == 2


async def test_an_empty_queue_counts_nothing(store: MessageStore) -> None:
    assert isinstance(store, QueueCounter)
    with anyio.fail_after(10):
        assert await store.queued_recipients() == []
