"""Store conformance: retention. ``oldest`` says when a folder's longest-kept message was filed there and
``purge`` deletes what was filed before a time, never a queued message, durably and in batches."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import signal
import subprocess

import anyio
import pytest

from spoolerd.errors import InvalidArgument, NotFound, Submitted
from spoolerd.message import Draft, FolderRole, InboundMessage, NewRecipient, RecipientState, RecipientUpdate
from spoolerd.store import MessageStore
from spoolerd.testing import FakeClock, StoreFactory

CONTENT = b"Subject: sent\r\n\r\n" + b"x" * 4000 + b"\r\n"


async def sent_copy(store: MessageStore) -> str:
    """A message submitted, delivered and filed in Sent Items by finish, as the spooler does it."""
    outbox, sent = await store.folder(FolderRole.OUTBOX), await store.folder(FolderRole.SENT)
    mid = await store.create_message(
        outbox.id, Draft(CONTENT, [NewRecipient("b@example.org")], sentmail_folder=sent.id)
    )
    await store.submit(mid)
    await store.lock(mid, "spooler", 60)
    await store.finish(mid, "spooler", outcomes=[RecipientUpdate(0, RecipientState.DELIVERED)])
    return mid


async def ids_in(store: MessageStore, role: FolderRole) -> list[str]:
    return [m.id for m in await store.list_messages((await store.folder(role)).id)]


async def test_an_empty_folder_has_no_oldest_and_purges_nothing(
    store: MessageStore, clock: FakeClock
) -> None:
    sent = await store.folder(FolderRole.SENT)
    assert await store.oldest(sent.id) is None
    assert await store.purge(sent.id, clock.now + 1) == 0


async def test_age_counts_from_filing_in_sent_items_not_from_creation(
    store: MessageStore, clock: FakeClock
) -> None:
    sent = await store.folder(FolderRole.SENT)
    outbox = await store.folder(FolderRole.OUTBOX)
    mid = await store.create_message(
        outbox.id, Draft(CONTENT, [NewRecipient("b@example.org")], sentmail_folder=sent.id)
    )
    await store.submit(mid)
    clock.advance(3 * 86400)  # queued for three days before it went out
    await store.lock(mid, "spooler", 60)
    await store.finish(mid, "spooler")
    assert await store.oldest(sent.id) == clock.now
    assert await store.purge(sent.id, clock.now) == 0  # filed at that instant, not before it
    assert await ids_in(store, FolderRole.SENT) == [mid]


async def test_purge_deletes_what_was_filed_before_the_time_and_keeps_the_rest(
    store: MessageStore, clock: FakeClock
) -> None:
    sent = await store.folder(FolderRole.SENT)
    old = [await sent_copy(store) for _ in range(3)]
    clock.advance(86400)
    young = await sent_copy(store)
    delivery = await store.deliver(InboundMessage(CONTENT))  # another folder, just as old
    assert await store.oldest(sent.id) == clock.now - 86400

    assert await store.purge(sent.id, clock.now - 3600) == 3
    assert await ids_in(store, FolderRole.SENT) == [young]
    assert await store.oldest(sent.id) == clock.now
    for mid in old:
        with pytest.raises(NotFound):
            await store.open(mid)
    assert (await store.open(young)).content == CONTENT
    assert await ids_in(store, FolderRole.INBOX) == [delivery.message_id]


async def test_a_moved_message_counts_from_its_move(store: MessageStore, clock: FakeClock) -> None:
    drafts, sent = await store.folder(FolderRole.DRAFTS), await store.folder(FolderRole.SENT)
    mid = await store.create_message(drafts.id, Draft(CONTENT, [NewRecipient("b@example.org")]))
    clock.advance(86400)
    await store.move(mid, sent.id)
    assert await store.oldest(sent.id) == clock.now
    assert await store.purge(sent.id, clock.now - 1) == 0


async def test_a_queued_message_is_never_purged_nor_counted(store: MessageStore, clock: FakeClock) -> None:
    sent = await store.folder(FolderRole.SENT)
    mid = await store.create_message(sent.id, Draft(CONTENT, [NewRecipient("b@example.org")]))
    await store.submit(mid)
    clock.advance(86400)
    assert await store.oldest(sent.id) is None
    assert await store.purge(sent.id, clock.now) == 0
    assert (await store.open(mid)).queued
    with pytest.raises(Submitted):
        await store.delete(mid)


async def test_purge_takes_every_batch(store: MessageStore, clock: FakeClock) -> None:
    sent = await store.folder(FolderRole.SENT)
    ids = await asyncio.gather(
        *(store.create_message(sent.id, Draft(CONTENT, [NewRecipient("b@example.org")])) for _ in range(700))
    )
    clock.advance(1)
    keep = await store.create_message(sent.id, Draft(CONTENT, [NewRecipient("b@example.org")]))
    assert await store.purge(sent.id, clock.now) == len(ids)
    assert await ids_in(store, FolderRole.SENT) == [keep]


async def test_unknown_folders_and_bad_times_are_refused(store: MessageStore, clock: FakeClock) -> None:
    sent = await store.folder(FolderRole.SENT)
    for folder in ("999999", "not-an-id"):
        with pytest.raises(NotFound):
            await store.oldest(folder)
        with pytest.raises(NotFound):
            await store.purge(folder, clock.now)
    for bad in (math.nan, math.inf):
        with pytest.raises(InvalidArgument):
            await store.purge(sent.id, bad)


async def test_a_purge_survives_a_reopen(store_factory: StoreFactory, clock: FakeClock) -> None:
    store = await store_factory.open()
    sent = await store.folder(FolderRole.SENT)
    for _ in range(5):
        await sent_copy(store)
    clock.advance(86400)
    young = await sent_copy(store)
    assert await store.purge(sent.id, clock.now - 1) == 5
    await store_factory.close(store)

    again = await store_factory.open()
    assert await ids_in(again, FolderRole.SENT) == [young]
    assert await again.oldest(sent.id) == clock.now
    assert (await again.open(young)).content == CONTENT


@pytest.mark.timeout(180)
async def test_a_purge_killed_part_way_keeps_every_young_copy_whole(
    store_factory: StoreFactory, clock: FakeClock
) -> None:
    store = await store_factory.open()
    sent = await store.folder(FolderRole.SENT)
    rcpt = [NewRecipient("b@example.org")]
    old = await asyncio.gather(*(store.create_message(sent.id, Draft(CONTENT, rcpt)) for _ in range(3000)))
    clock.advance(3600)
    young = await asyncio.gather(*(store.create_message(sent.id, Draft(CONTENT, rcpt)) for _ in range(50)))
    await store_factory.close(store)

    proc = await asyncio.create_subprocess_exec(
        *store_factory.child_command("purge", repr(clock.now - 1)), stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    with anyio.fail_after(30):
        assert (await proc.stdout.readline()).strip() == b"ready"
    await asyncio.sleep(random.uniform(0.0, 1.0))  # the kill point is the variable under test
    with contextlib.suppress(ProcessLookupError):  # a fast store may have finished: a kill point too
        proc.send_signal(signal.SIGKILL)
    await proc.wait()

    assert await store_factory.integrity() == "ok"
    again = await store_factory.open()
    left = await ids_in(again, FolderRole.SENT)
    assert set(young) <= set(left)
    assert set(left) <= set(old) | set(young)
    for mid in left:  # whatever a batch left behind is whole: content and recipients
        message = await again.open(mid)
        assert message.content == CONTENT and len(message.recipients) == 1
    assert await again.purge(sent.id, clock.now - 1) == len(left) - len(young)  # the rest, next time
    assert sorted(await ids_in(again, FolderRole.SENT), key=int) == sorted(young, key=int)
