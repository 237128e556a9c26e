"""Claiming the due head in batches (spoolerd/claims.py): what is due is leased in one store call per
batch, never one ``lock`` per message; a claim whose answer was lost is handed back once the store
answers; at shutdown every claimed message, begun or still waiting for a worker, is handed back."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import anyio

from spoolerd.errors import StoreUnavailable
from spoolerd.message import RecipientState
from tests.conftest import FakeClock
from tests.engine.harness import Harness, spooler


def scripted(**settings: object) -> dict[str, object]:
    return {"provider": "test-scripted", **settings}


def count_calls(h: Harness) -> Counter[str]:
    """How often the spooler called the store's ``claim`` and ``lock`` (and the claims' sizes)."""
    calls: Counter[str] = Counter()
    claim, lock = h.store.claim, h.store.lock  # type: ignore[attr-defined]

    async def counted_claim(owner: str, lease: float, limit: int) -> Any:
        taken = await claim(owner, lease, limit)
        calls["claim"] += 1
        calls["claimed"] += len(taken)
        return taken

    async def counted_lock(message_id: str, owner: str, lease: float) -> Any:
        calls["lock"] += 1
        return await lock(message_id, owner, lease)

    h.store.claim = counted_claim  # type: ignore[attr-defined]
    h.store.lock = counted_lock  # type: ignore[method-assign]
    return calls


async def test_a_due_backlog_is_claimed_in_batches(tmp_path: Path, clock: FakeClock) -> None:
    async with spooler(tmp_path, clock, {"remote": scripted()}, spooler={"max_in_flight": 8}) as h:
        calls = count_calls(h)
        later = clock.now + 60
        mids = [await h.submit(f"r{n}@remote.test", not_before=later) for n in range(40)]
        assert calls["claim"] <= 40 and calls["claimed"] == 0  # nothing due yet
        clock.advance(60)
        h.spooler.wake()
        for mid in mids:
            await h.finished(mid)
        delivered = h.transport("remote").delivered
        assert sorted(m for m, _, _ in delivered) == sorted(mids)  # each exactly once
        assert calls["lock"] == 0
        assert calls["claimed"] == 40
        # a batch waits for a quarter of the slots (2 of 8): at most one claim per 2 messages after the
        # first, where one per message would be 40
        assert calls["claim"] - 40 <= 1 + 40 // 2


async def test_a_claim_whose_answer_was_lost_is_handed_back_once_the_store_answers(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A connection cut at the claim's commit: the batch is leased but the spooler never heard. Once the
    store answers again the spooler hands it back and delivers it, well before the lease (300 s) ends."""
    async with spooler(tmp_path, clock, {"remote": scripted()}) as h:
        real = h.store.claim  # type: ignore[attr-defined]
        lost = [StoreUnavailable("connection lost at commit")]
        raised = anyio.Event()

        async def committed_but_unanswered(owner: str, lease: float, limit: int) -> Any:
            taken = await real(owner, lease, limit)
            if lost and taken:
                raised.set()
                raise lost.pop()
            return taken

        h.store.claim = committed_but_unanswered  # type: ignore[attr-defined]
        mid = await h.submit("a@remote.test")
        with anyio.fail_after(10):
            await raised.wait()  # the spooler claims it at once and hears nothing back
        (entry,) = [e async for e in h.store.outgoing_queue() if e.id == mid]
        assert entry.lock_owner == h.spooler.dispatcher.owner  # taken, though the spooler never heard
        await h.finished(mid)  # after the failing store's first wait (1 s), not the lease's 300
        (r,) = (await h.message(mid)).recipients
        assert r.state is RecipientState.DELIVERED


async def test_every_claimed_message_is_handed_back_at_shutdown(tmp_path: Path, clock: FakeClock) -> None:
    async with spooler(tmp_path, clock, {"remote": scripted()}, spooler={"max_in_flight": 16}) as h:
        remote = h.transport("remote")
        remote.gate = anyio.Event()  # never opens
        mids = [await h.submit(f"r{n}@remote.test", not_before=clock.now + 60) for n in range(16)]
        clock.advance(60)
        h.spooler.wake()
        with anyio.fail_after(10):
            await remote.entered.wait()
            await h.spooler.shutdown(deadline=0.2)
        entries = [e async for e in h.store.outgoing_queue() if e.id in mids]
        assert len(entries) == 16
        assert [e.id for e in entries if e.lock_owner is not None] == []  # begun or not, all handed back
