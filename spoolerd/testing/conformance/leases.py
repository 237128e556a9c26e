"""Store conformance: locks as leases (taken, renewed, expired, held from submit, reclaimed by a restarted
daemon)."""

from __future__ import annotations

import pytest

from spoolerd.errors import LockLost, NoAccess, NotInQueue
from spoolerd.message import Access, SubmitFlag
from spoolerd.store import MessageStore
from spoolerd.testing import FakeClock, StoreFactory

from .helpers import new_message, queue_ids, queued


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
