"""Conformance: ``postpone``, the spooler's one statement for the messages of a destination held again."""

from __future__ import annotations

from spoolerd.store import MessageStore
from spoolerd.testing import FakeClock

from .helpers import new_message, queue_ids, queued

__all__ = ["test_postpone_moves_the_unlocked_messages_due_before_the_new_time"]


async def test_postpone_moves_the_unlocked_messages_due_before_the_new_time(
    store: MessageStore, clock: FakeClock
) -> None:
    now = clock.now
    due_now, locked, held, later, unlisted = [await queued(store) for _ in range(5)]
    deferred_send = await queued(store, not_before=now + 7200)
    draft = await new_message(store)
    await store.lock(locked, "spooler", 60)
    await store.hold(held)
    await store.lock(later, "spooler", 60)
    await store.unlock(later, "spooler", retry_at=now + 9000)
    ids = [due_now, locked, held, later, deferred_send, draft, "999999"]
    assert await store.postpone(ids, now + 3600) == 1  # only due_now: the rest are locked, held, later
    assert await queue_ids(store, due_at=now + 3599, include_locked=False) == [unlisted]
    entries = {e.id: e async for e in store.outgoing_queue()}
    assert entries[due_now].due_at == now + 3600
    assert (await store.open(due_now)).next_attempt == now + 3600
    assert entries[later].due_at == now + 9000 and entries[deferred_send].due_at == now + 7200
    assert entries[unlisted].due_at == now
    assert await store.postpone([], now + 3600) == 0
    assert await store.postpone([unlisted, due_now], now + 3600) == 1  # again: already due then
