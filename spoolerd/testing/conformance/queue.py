"""Store conformance: submit, the outgoing queue in order and when each message is due, hold, abort and
submitting again."""

from __future__ import annotations

import asyncio

import pytest

from spoolerd.errors import InvalidArgument, LockLost, NoRecipients, NotInQueue, Submitted, UnableToAbort
from spoolerd.events import QueueChanged
from spoolerd.message import (
    Access,
    Draft,
    FolderRole,
    MessageFlag,
    NewRecipient,
    RecipientState,
    RecipientUpdate,
    SubmitFlag,
)
from spoolerd.store import MessageStore
from spoolerd.testing import FakeClock, StoreFactory

from .helpers import CONTENT, new_message, own_event, queue_ids, queued


async def test_submit_without_recipients_is_refused_and_leaves_the_message(store: MessageStore) -> None:
    outbox = await store.folder(FolderRole.OUTBOX)
    mid = await store.create_message(outbox.id, Draft(CONTENT, [], message_class=""))
    before = await store.open(mid)
    with pytest.raises(NoRecipients):
        await store.submit(mid)
    after = await store.open(mid)
    assert after == before
    assert await queue_ids(store) == []


async def test_submit_sets_flags_responsibility_and_submit_time(
    store: MessageStore, clock: FakeClock
) -> None:
    mid = await new_message(store, "a@example.org", "b@example.org", flags=MessageFlag.FROMME)
    clock.advance(42)
    await store.submit(mid)
    m = await store.open(mid)
    assert MessageFlag.SUBMIT in m.flags and MessageFlag.UNSENT in m.flags and MessageFlag.FROMME in m.flags
    assert m.client_submit_time == clock.now
    assert m.submit_flags == SubmitFlag.NONE
    assert [r.responsibility for r in m.recipients] == [False, False]
    assert await queue_ids(store) == [mid]
    with pytest.raises(Submitted):
        await store.submit(mid)


async def test_empty_class_is_ipm_when_sent(store: MessageStore) -> None:
    mid = await queued(store, message_class="")
    assert (await store.open(mid)).message_class == "IPM"


async def test_preprocess_flag_is_set_then_cleared_by_the_spooler(store: MessageStore) -> None:
    mid = await new_message(store, "list@example.org")
    await store.submit(mid, preprocess=True)
    assert (await store.open(mid)).submit_flags == SubmitFlag.PREPROCESS
    with pytest.raises(LockLost):
        await store.complete_preprocessing(mid, "spooler", content=b"x")
    await store.lock(mid, "spooler", 60)
    expanded = [NewRecipient("one@example.org"), NewRecipient("two@example.org")]
    done = await store.complete_preprocessing(
        mid, "spooler", content=b"Date: x\r\n" + CONTENT, recipients=expanded
    )
    assert SubmitFlag.PREPROCESS not in done.submit_flags and SubmitFlag.LOCKED in done.submit_flags
    assert done.content == b"Date: x\r\n" + CONTENT and done.size == len(done.content)
    assert [r.address for r in done.recipients] == ["one@example.org", "two@example.org"]
    with pytest.raises(NoRecipients):
        await store.complete_preprocessing(mid, "spooler", recipients=[])


async def test_queue_is_in_ascending_submit_time(store: MessageStore, clock: FakeClock) -> None:
    ids = [await new_message(store) for _ in range(4)]
    for mid in (ids[2], ids[0], ids[3], ids[1]):
        clock.advance(1)
        await store.submit(mid)
    assert await queue_ids(store) == [ids[2], ids[0], ids[3], ids[1]]
    times = [e.client_submit_time async for e in store.outgoing_queue()]
    assert times == sorted(times)


async def test_queue_iteration_reads_every_page_in_order(store: MessageStore) -> None:
    outbox = await store.folder(FolderRole.OUTBOX)
    rcpt = [NewRecipient("b@example.org")]
    ids = await asyncio.gather(*(store.create_message(outbox.id, Draft(CONTENT, rcpt)) for _ in range(1300)))
    await asyncio.gather(*(store.submit(mid) for mid in ids))  # one submit time: ties keep id order
    listed = await queue_ids(store)
    assert sorted(listed, key=int) == sorted(ids, key=int)
    assert len(listed) == len(set(listed)) == 1300


async def test_not_before_and_retry_time_decide_what_is_due(store: MessageStore, clock: FakeClock) -> None:
    now = clock.now
    later = await queued(store, not_before=now + 3600)
    soon = await queued(store)
    assert await queue_ids(store, due_at=now) == [soon]
    assert await queue_ids(store) == [later, soon]
    assert await store.next_due() == now

    await store.lock(soon, "spooler", 60)
    await store.unlock(soon, "spooler", retry_at=now + 300)
    assert await queue_ids(store, due_at=now) == []
    assert await store.next_due() == now + 300
    assert await queue_ids(store, due_at=now + 300) == [soon]
    assert await queue_ids(store, due_at=now + 3600) == [soon, later]  # the due head: in due order
    # a retry never brings a message forward past its deferred send time
    await store.lock(later, "spooler", 60)
    await store.unlock(later, "spooler", retry_at=now + 10)
    assert [e.due_at async for e in store.outgoing_queue() if e.id == later] == [now + 3600]


async def test_abort_submit(store: MessageStore, clock: FakeClock) -> None:
    draft_only = await new_message(store)
    with pytest.raises(NotInQueue):
        await store.abort_submit(draft_only)

    mid = await queued(store)
    await store.abort_submit(mid)
    m = await store.open(mid, Access.MODIFY)
    assert MessageFlag.SUBMIT not in m.flags and m.writable and not m.queued
    assert await queue_ids(store) == []
    with pytest.raises(NotInQueue):
        await store.abort_submit(mid)

    await store.submit(mid)
    await store.lock(mid, "spooler", 30)
    with pytest.raises(UnableToAbort):
        await store.abort_submit(mid)
    assert await queue_ids(store) == [mid]
    clock.advance(31)  # the lock was a crashed spooler's: once it expires, abort works again
    await store.abort_submit(mid)
    assert await queue_ids(store) == []


async def test_resubmit_after_abort_starts_delivery_over(store: MessageStore) -> None:
    mid = await queued(store, "a@example.org")
    await store.lock(mid, "spooler", 60)
    await store.record_outcomes(mid, "spooler", [RecipientUpdate(0, RecipientState.DEFERRED, "x", 421)])
    await store.unlock(mid, "spooler")
    await store.abort_submit(mid)
    await store.submit(mid)
    (r,) = (await store.open(mid)).recipients
    assert (r.state, r.attempts, r.last_code, r.responsibility) == (RecipientState.PENDING, 0, None, False)


async def test_concurrent_submits_are_all_durable(store_factory: StoreFactory) -> None:
    store = await store_factory.open()
    outbox = await store.folder(FolderRole.OUTBOX)
    rcpt = [NewRecipient("b@example.org")]
    ids = await asyncio.gather(*(store.create_message(outbox.id, Draft(CONTENT, rcpt)) for _ in range(300)))
    await asyncio.gather(*(store.submit(mid) for mid in ids))
    await store_factory.close(store)
    reopened = await store_factory.open()
    assert sorted(await queue_ids(reopened), key=int) == sorted(ids, key=int)


async def test_resubmit_keeps_final_outcomes_unless_resend(store: MessageStore) -> None:
    mid = await queued(store, "done@example.org", "later@example.org")
    await store.lock(mid, "spooler", 60)
    await store.record_outcomes(
        mid,
        "spooler",
        [
            RecipientUpdate(0, RecipientState.DELIVERED, "x", 250),
            RecipientUpdate(1, RecipientState.DEFERRED, "x"),
        ],
    )
    await store.unlock(mid, "spooler")
    await store.abort_submit(mid)
    await store.submit(mid)
    states = [r.state for r in (await store.open(mid)).recipients]
    assert states == [RecipientState.DELIVERED, RecipientState.PENDING]  # never delivered twice

    await store.abort_submit(mid)
    m = await store.open(mid, Access.MODIFY)
    await store.save(
        mid,
        Draft(m.content, [NewRecipient(r.address) for r in m.recipients], flags=m.flags | MessageFlag.RESEND),
    )
    await store.submit(mid)
    assert [r.state for r in (await store.open(mid)).recipients] == [RecipientState.PENDING] * 2


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
async def test_times_must_be_finite(store: MessageStore, bad: float) -> None:
    with pytest.raises(InvalidArgument):
        await new_message(store, not_before=bad)
    mid = await queued(store)
    with pytest.raises(InvalidArgument):
        await store.lock(mid, "spooler", bad)
    await store.lock(mid, "spooler", 60)
    with pytest.raises(InvalidArgument):
        await store.unlock(mid, "spooler", retry_at=bad)
    with pytest.raises(InvalidArgument):
        await store.record_outcomes(
            mid, "spooler", [RecipientUpdate(0, RecipientState.DEFERRED, next_attempt=bad)]
        )


async def test_a_change_made_for_a_cancelled_caller_is_still_announced(store: MessageStore) -> None:
    import anyio

    mid = await new_message(store)
    async with store.subscribe() as events:
        task = asyncio.ensure_future(store.submit(mid))
        await asyncio.sleep(0)  # one step: the submit is on its way to the store
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        if mid in await queue_ids(store):
            with anyio.fail_after(5):
                assert await own_event(events) == QueueChanged(store.name, "submit", mid)


async def test_hold_keeps_a_message_queued_but_never_due(store: MessageStore, clock: FakeClock) -> None:

    mid = await queued(store)
    draft_only = await new_message(store)
    with pytest.raises(NotInQueue):
        await store.hold(draft_only)
    async with store.subscribe() as events:
        await store.hold(mid)
        assert await own_event(events) == QueueChanged(store.name, "hold", mid)
        assert await queue_ids(store) == [mid]  # still queued ...
        assert await queue_ids(store, due_at=clock.now + 86400) == []  # ... never due
        assert await store.next_due() is None
        (entry,) = [e async for e in store.outgoing_queue()]
        assert entry.held and (await store.open(mid)).held
        await store.hold(mid, False)
        assert await own_event(events) == QueueChanged(store.name, "release", mid)
    assert await queue_ids(store, due_at=clock.now) == [mid]
    await store.hold(mid)
    await store.abort_submit(mid)  # a held message may still be aborted
    await store.submit(mid)  # and a new submission is not held
    assert not (await store.open(mid)).held
