"""Store conformance: claiming the due head in batches (``Claiming``, an optional ability)."""

from __future__ import annotations

import asyncio

import pytest

from spoolerd.errors import LockLost, NoAccess
from spoolerd.message import MessageFlag, RecipientState, RecipientUpdate
from spoolerd.store import Claiming, MessageStore
from spoolerd.testing import FakeClock

from .helpers import queue_ids, queued


def claimer(store: MessageStore) -> Claiming:
    if not isinstance(store, Claiming):
        pytest.skip("this store does not claim in batches (an optional ability)")
    return store


async def test_claim_takes_the_due_head_in_due_order(store: MessageStore, clock: FakeClock) -> None:
    claims = claimer(store)
    later = await queued(store)
    await store.unlock((await store.lock(later, "x", 30)).id, "x", retry_at=clock.now + 10)
    first, second, third = [await queued(store, f"r{n}@example.org") for n in range(3)]
    taken = await claims.claim("spooler-a", 30, 2)
    assert [m.id for m in taken] == [first, second]
    for message in taken:  # loaded as ``lock`` loads: its recipients, its content, the lease
        assert message.lock_owner == "spooler-a" and not message.writable and message.queued
        assert message.content.startswith(b"Subject: queued")
        assert [r.address for r in message.recipients] == [
            f"r{[first, second].index(message.id)}@example.org"
        ]
    with pytest.raises(NoAccess):  # a lease like any other
        await store.lock(first, "spooler-b", 30)
    assert await queue_ids(store, include_locked=False, due_at=clock.now) == [third]  # later: not due
    assert [m.id for m in await claims.claim("spooler-b", 30, 10)] == [third]
    assert await claims.claim("spooler-b", 30, 10) == []
    clock.advance(10)
    assert [m.id for m in await claims.claim("spooler-b", 30, 10)] == [later]


async def test_claim_passes_over_held_and_live_leases_and_takes_expired_ones(
    store: MessageStore, clock: FakeClock
) -> None:
    claims = claimer(store)
    held, mine, theirs, free = [await queued(store) for _ in range(4)]
    await store.hold(held)
    await store.lock(mine, "spooler-a", 30)
    await store.lock(theirs, "spooler-b", 60)
    assert [m.id for m in await claims.claim("spooler-a", 30, 10)] == [free]  # its own live lease too
    clock.advance(45)  # spooler-a's leases are over, spooler-b's is not
    assert [m.id for m in await claims.claim("spooler-c", 30, 10)] == [mine, free]
    with pytest.raises(LockLost):
        await store.unlock(mine, "spooler-a")
    assert await claims.claim("spooler-c", 30, 0) == []


async def test_a_claimed_message_finishes_and_unlocks_as_a_locked_one(
    store: MessageStore, clock: FakeClock
) -> None:
    claims = claimer(store)
    done, again = [await queued(store) for _ in range(2)]
    assert len(await claims.claim("spooler", 30, 5)) == 2
    delivered = RecipientUpdate(0, RecipientState.DELIVERED, "smtp", 250, "2.0.0", "ok")
    await store.finish(done, "spooler", outcomes=[delivered])
    await store.unlock(again, "spooler", retry_at=clock.now + 60)
    assert await queue_ids(store) == [again]
    assert MessageFlag.SUBMIT not in (await store.open(done)).flags
    assert await claims.claim("spooler", 30, 5) == []
    clock.advance(60)
    assert [m.id for m in await claims.claim("spooler", 30, 5)] == [again]


async def test_claims_at_once_take_disjoint_batches(store: MessageStore) -> None:
    claims = claimer(store)
    ids = {await queued(store) for _ in range(12)}
    batches = await asyncio.gather(*(claims.claim(f"spooler-{n}", 30, 4) for n in range(4)))
    taken = [m.id for batch in batches for m in batch]
    assert len(taken) == len(set(taken)) == 12 and set(taken) == ids
