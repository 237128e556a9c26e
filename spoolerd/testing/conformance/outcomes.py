"""Store conformance: per-recipient outcomes, kept once final, and finishing a message (where it goes,
who may finish it)."""

from __future__ import annotations

import pytest

from spoolerd.errors import InvalidArgument, LockLost, NoSupport, NotFound, NotInQueue
from spoolerd.message import Access, FolderRole, MessageFlag, RecipientState, RecipientUpdate, SubmitFlag
from spoolerd.store import MessageStore
from spoolerd.testing import FakeClock

from .helpers import queue_ids, queued


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


async def test_a_finish_naming_a_recipient_twice_records_them_in_order(store: MessageStore) -> None:
    """Outcomes of one recipient given twice are recorded in turn: a final one is kept, as always."""
    kept, moved = await queued(store), await queued(store)
    for mid in (kept, moved):
        await store.lock(mid, "spooler", 60)
    deferred = RecipientUpdate(0, RecipientState.DEFERRED, "x", 451, "4.0.0", "later")
    delivered = RecipientUpdate(0, RecipientState.DELIVERED, "x", 250, "2.0.0", "ok")
    with pytest.raises(NoSupport):  # not the holder: nothing recorded
        await store.finish(kept, "other", outcomes=[deferred, delivered])
    await store.finish(kept, "spooler", outcomes=[delivered, deferred])
    await store.finish(moved, "spooler", outcomes=[deferred, delivered])
    (first,) = (await store.open(kept, Access.BEST)).recipients
    (second,) = (await store.open(moved, Access.BEST)).recipients
    assert first.state is RecipientState.DELIVERED and first.attempts == 1  # the deferral came too late
    assert second.state is RecipientState.DELIVERED and second.attempts == 2
    assert await queue_ids(store) == []


async def test_a_finish_refused_changes_no_outcome(store: MessageStore) -> None:
    """Whatever refuses a finish (an unknown recipient, even of a message deleted after submit; another
    lease holder) refuses all of it: no outcome is recorded, the message stays queued."""
    delivered = RecipientUpdate(0, RecipientState.DELIVERED, "x")
    deleted = await queued(store, delete_after_submit=True)
    mid = await queued(store, "a@example.org", "b@example.org")
    for message_id in (deleted, mid):
        await store.lock(message_id, "spooler", 60)
    with pytest.raises(InvalidArgument):
        await store.finish(
            deleted, "spooler", outcomes=[delivered, RecipientUpdate(3, RecipientState.FAILED)]
        )
    with pytest.raises(NoSupport):
        await store.finish(mid, "other", outcomes=[delivered, RecipientUpdate(1, RecipientState.FAILED)])
    with pytest.raises(NotFound):
        await store.finish("999999", "spooler", outcomes=[delivered])
    assert await queue_ids(store) == [deleted, mid]
    for message_id in (deleted, mid):
        recipients = (await store.lock(message_id, "spooler", 60)).recipients
        assert {(r.state, r.attempts) for r in recipients} == {(RecipientState.PENDING, 0)}


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
