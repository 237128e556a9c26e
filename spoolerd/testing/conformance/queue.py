"""Store conformance: submit, the outgoing queue, locks as leases, outcomes, finish and abort."""

from __future__ import annotations

import asyncio

import pytest

from spoolerd.errors import (
    InvalidArgument,
    LockLost,
    NoAccess,
    NoRecipients,
    NoSupport,
    NotInQueue,
    Submitted,
    UnableToAbort,
)
from spoolerd.events import QueueChanged, StoreEvent, Subscription
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


async def test_lock_is_a_lease(store: MessageStore, clock: FakeClock) -> None:
    mid = await queued(store)
    await store.lock(mid, "spooler-a", 30)
    with pytest.raises(NoAccess):
        await store.lock(mid, "spooler-b", 30)
    assert await queue_ids(store, include_locked=False) == []
    assert await store.next_due() == clock.now + 30  # wakes when the lease could be reclaimed
    await store.renew(mid, "spooler-a", 60)
    clock.advance(45)
    with pytest.raises(NoAccess):
        await store.lock(mid, "spooler-b", 30)
    clock.advance(20)  # spooler-a crashed: its lease has run out
    assert await queue_ids(store, include_locked=False) == [mid]
    assert SubmitFlag.LOCKED not in (await store.open(mid, Access.BEST)).submit_flags
    taken = await store.lock(mid, "spooler-b", 30)
    assert taken.lock_owner == "spooler-b"
    with pytest.raises(LockLost):
        await store.unlock(mid, "spooler-a")
    with pytest.raises(LockLost):
        await store.renew(mid, "spooler-a", 30)
    await store.unlock(mid, "spooler-b")
    assert await queue_ids(store, include_locked=False) == [mid]


async def test_lock_of_an_unqueued_message_is_not_in_queue(store: MessageStore) -> None:
    mid = await new_message(store)
    with pytest.raises(NotInQueue):
        await store.lock(mid, "spooler", 30)


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


async def test_outcomes_are_recorded_per_recipient(store: MessageStore, clock: FakeClock) -> None:
    mid = await queued(store, "ok@example.org", "later@example.org", "bad@example.org")
    with pytest.raises(LockLost):
        await store.record_outcomes(mid, "spooler", [RecipientUpdate(0, RecipientState.DELIVERED)])
    await store.lock(mid, "spooler", 60)
    await store.record_outcomes(
        mid,
        "spooler",
        [
            RecipientUpdate(0, RecipientState.DELIVERED, "smtp", 250, "2.0.0", "queued as X"),
            RecipientUpdate(1, RecipientState.DEFERRED, "smtp", 451, "4.3.0", "try later", clock.now + 300),
            RecipientUpdate(2, RecipientState.FAILED, "smtp", 550, "5.1.1", "no such user"),
        ],
    )
    # a final outcome is never overwritten, whatever a later attempt reports
    await store.record_outcomes(
        mid,
        "spooler",
        [
            RecipientUpdate(0, RecipientState.FAILED, "smtp", 554, "5.0.0", "late failure"),
            RecipientUpdate(1, RecipientState.DELIVERED, "smtp", 250, "2.0.0", "ok now"),
        ],
    )
    m = await store.lock(mid, "spooler", 60)
    r0, r1, r2 = m.recipients
    assert (r0.state, r0.responsibility, r0.attempts, r0.last_code, r0.last_text) == (
        RecipientState.DELIVERED, True, 1, 250, "queued as X",
    )  # fmt: skip
    assert (r1.state, r1.responsibility, r1.attempts, r1.last_status, r1.transport) == (
        RecipientState.DELIVERED, True, 2, "2.0.0", "smtp",
    )  # fmt: skip
    assert (r2.state, r2.responsibility, r2.last_code, r2.last_status) == (
        RecipientState.FAILED,
        True,
        550,
        "5.1.1",
    )


async def test_deferred_outcome_keeps_its_retry_time(store: MessageStore, clock: FakeClock) -> None:
    mid = await queued(store)
    await store.lock(mid, "spooler", 60)
    await store.record_outcomes(
        mid,
        "spooler",
        [RecipientUpdate(0, RecipientState.DEFERRED, "smtp", None, "4.4.1", "timeout", clock.now + 99)],
    )
    (r,) = (await store.lock(mid, "spooler", 60)).recipients
    assert (r.state, r.responsibility, r.next_attempt, r.last_code) == (
        RecipientState.DEFERRED, False, clock.now + 99, None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("sentmail", "delete_after", "expected"),
    [
        (False, False, "left"),
        (True, False, "moved"),
        (False, True, "deleted"),
        (True, True, "deleted"),
    ],
)
async def test_finish_table(store: MessageStore, sentmail: bool, delete_after: bool, expected: str) -> None:
    outbox = await store.folder(FolderRole.OUTBOX)
    sent = await store.folder(FolderRole.SENT)
    mid = await queued(store, sentmail_folder=sent.id if sentmail else None, delete_after_submit=delete_after)
    await store.lock(mid, "spooler", 60)
    await store.record_outcomes(mid, "spooler", [RecipientUpdate(0, RecipientState.DELIVERED, "x")])
    await store.finish(mid, "spooler")
    assert await queue_ids(store) == []
    in_outbox = [s.id for s in await store.list_messages(outbox.id)]
    in_sent = [s.id for s in await store.list_messages(sent.id)]
    if expected == "deleted":
        assert mid not in in_outbox and mid not in in_sent
        return
    m = await store.open(mid, Access.MODIFY)
    assert MessageFlag.SUBMIT not in m.flags and MessageFlag.UNSENT not in m.flags
    assert m.submit_flags == SubmitFlag.NONE and m.writable
    assert m.recipients[0].state == RecipientState.DELIVERED
    assert (mid in in_sent, mid in in_outbox) == ((True, False) if expected == "moved" else (False, True))


async def test_finish_records_the_last_outcomes_with_it(store: MessageStore) -> None:
    sent = await store.folder(FolderRole.SENT)
    mid = await queued(store, "a@example.org", "b@example.org", sentmail_folder=sent.id)
    await store.lock(mid, "spooler", 60)
    await store.record_outcomes(
        mid, "spooler", [RecipientUpdate(0, RecipientState.FAILED, "x", 550, "5.1.1")]
    )
    await store.finish(
        mid,
        "spooler",
        outcomes=[
            RecipientUpdate(0, RecipientState.DELIVERED, "x", 250),  # already final: kept as it was
            RecipientUpdate(1, RecipientState.DELIVERED, "x", 250, "2.0.0", "queued"),
        ],
    )
    assert await queue_ids(store) == []
    a, b = (await store.open(mid)).recipients
    assert (a.state, a.last_code, a.attempts) == (RecipientState.FAILED, 550, 1)
    assert (b.state, b.last_code, b.last_text, b.attempts, b.responsibility) == (
        RecipientState.DELIVERED, 250, "queued", 1, True,
    )  # fmt: skip
    assert mid in [m.id for m in await store.list_messages(sent.id)]


async def test_finish_with_a_bad_outcome_changes_nothing(store: MessageStore) -> None:
    mid = await queued(store)
    await store.lock(mid, "spooler", 60)
    with pytest.raises(InvalidArgument):
        await store.finish(mid, "spooler", outcomes=[RecipientUpdate(7, RecipientState.DELIVERED, "x")])
    assert await queue_ids(store) == [mid]


async def test_finish_is_only_for_the_lock_holder(store: MessageStore) -> None:
    mid = await queued(store)
    with pytest.raises(NoSupport):
        await store.finish(mid, "client")
    await store.lock(mid, "spooler", 60)
    with pytest.raises(NoSupport):
        await store.finish(mid, "somebody-else")
    await store.finish(mid, "spooler")
    with pytest.raises(NotInQueue):
        await store.finish(mid, "spooler")


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


async def test_submit_can_queue_a_message_already_locked(store: MessageStore) -> None:
    mid = await new_message(store)
    await store.submit(mid, lock=("coupled", 60))
    (entry,) = [e async for e in store.outgoing_queue()]
    assert SubmitFlag.LOCKED in entry.submit_flags and entry.lock_owner == "coupled"
    assert await queue_ids(store, include_locked=False) == []
    with pytest.raises(NoAccess):
        await store.lock(mid, "spooler", 60)
    with pytest.raises(NoAccess):
        await store.open(mid)
    held = await store.lock(mid, "coupled", 60)  # the holder may take a fresh snapshot
    assert held.queued
    await store.finish(mid, "coupled")
    assert await queue_ids(store) == []


async def test_delay_reported_is_kept_until_the_next_submit(store: MessageStore) -> None:
    mid = await queued(store)
    assert not (await store.open(mid)).delay_reported
    await store.lock(mid, "spooler", 60)
    await store.record_outcomes(
        mid, "spooler", [RecipientUpdate(0, RecipientState.DEFERRED)], delay_reported=True
    )
    assert (await store.lock(mid, "spooler", 60)).delay_reported
    await store.unlock(mid, "spooler")
    await store.abort_submit(mid)
    await store.submit(mid)
    assert not (await store.open(mid)).delay_reported


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


async def test_reclaim_takes_back_an_owners_leases_and_no_one_elses(
    store_factory: StoreFactory, clock: FakeClock
) -> None:
    """A restarted daemon takes back what its previous life held (its own name and its sub-owners',
    ``owner#...``) at once, live or not; a name that merely starts like it, or another owner's, keeps
    its lease until expiry. Durable: a reopened store sees the released locks."""
    store = await store_factory.open()
    owners = ["spoolerd@h:/s", "spoolerd@h:/s#coupled:local:1", "spoolerd@h:/s2", "other", "spoolerd@h:/"]
    ids = {owner: await queued(store) for owner in owners}
    for owner, mid in ids.items():
        await store.lock(mid, owner, 300)
    assert await store.next_due() == clock.now + 300  # everything is locked
    assert await store.reclaim("spoolerd@h:/s") == 2
    assert await store.reclaim("spoolerd@h:/s") == 0
    await store_factory.close(store)
    store = await store_factory.open()
    free = await queue_ids(store, due_at=clock.now, include_locked=False)
    assert sorted(free) == sorted([ids["spoolerd@h:/s"], ids["spoolerd@h:/s#coupled:local:1"]])
    for owner in ("spoolerd@h:/s2", "other", "spoolerd@h:/"):
        with pytest.raises(NoAccess):
            await store.lock(ids[owner], "spoolerd@h:/s", 300)
    await store.lock(ids["spoolerd@h:/s"], "anyone", 300)  # released: anyone may take it now
