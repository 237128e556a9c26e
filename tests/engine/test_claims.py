"""Claiming the due head in batches (spoolerd/claims.py): what is due is leased in one store call per
batch, never one ``lock`` per message; a claim whose answer was lost is handed back once the store
answers; at shutdown every claimed message, begun or still waiting for a worker, is handed back."""

from __future__ import annotations

import sqlite3
from collections import Counter
from contextlib import closing
from functools import partial
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


async def test_a_claim_answered_while_the_spooler_stops_is_handed_back(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Shutdown begins while a claim is on its way (an attempt in flight keeps shutdown waiting): the
    batch that claim leased is never started, and must not stay leased to this spooler."""
    async with spooler(tmp_path, clock, {"remote": scripted()}, spooler={"max_in_flight": 4}) as h:
        remote = h.transport("remote")
        remote.gate = anyio.Event()
        first = await h.submit("a@remote.test")
        with anyio.fail_after(10):
            await remote.entered.wait()  # ``first`` is in flight, waiting at the transport
        real = h.store.claim  # type: ignore[attr-defined]
        claiming, stopping, answered = anyio.Event(), anyio.Event(), anyio.Event()

        async def slow_claim(owner: str, lease: float, limit: int) -> Any:
            taken = await real(owner, lease, limit)
            if taken:
                claiming.set()
                await stopping.wait()
                answered.set()
            return taken

        h.store.claim = slow_claim  # type: ignore[attr-defined]
        stop_all = h.spooler.downloads.stop_all

        def stop_downloads() -> None:  # shutdown's first step, right after it stops starting attempts
            stop_all()
            stopping.set()

        h.spooler.downloads.stop_all = stop_downloads  # type: ignore[method-assign]
        second = await h.submit("b@remote.test")
        async with anyio.create_task_group() as tg:
            with anyio.fail_after(10):
                await claiming.wait()
                tg.start_soon(h.spooler.shutdown, 10.0)
                await answered.wait()
            remote.gate.set()  # ``first`` ends; shutdown returns
        (entry,) = [e async for e in h.store.outgoing_queue() if e.id == second]
        assert entry.lock_owner is None  # not left leased to a spooler that will never attempt it
        assert first not in {e.id async for e in h.store.outgoing_queue()}


async def test_a_claim_under_way_when_shutdown_cancels_is_handed_back(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Nothing in flight, so shutdown cancels the spooler at once, while a claim is on its way: the
    store commits it all the same (SQLite's writer finishes a job whose caller left), so what it leased
    must be handed back, not left until its lease ends."""
    async with spooler(tmp_path, clock, {"remote": scripted()}) as h:
        real = h.store.claim  # type: ignore[attr-defined]
        claiming, stopping = anyio.Event(), anyio.Event()

        async def slow_claim(owner: str, lease: float, limit: int) -> Any:
            taken = await real(owner, lease, limit)
            if taken:
                claiming.set()
                await stopping.wait()
            return taken

        h.store.claim = slow_claim  # type: ignore[attr-defined]
        stop_all = h.spooler.downloads.stop_all

        def stop_downloads() -> None:
            stop_all()
            stopping.set()

        h.spooler.downloads.stop_all = stop_downloads  # type: ignore[method-assign]
        mid = await h.submit("a@remote.test")
        with anyio.fail_after(10):
            await claiming.wait()
            await h.spooler.shutdown(deadline=10.0)
    # the daemon stopped (a new one would reclaim its own leases, so the file is read as it was left)
    with closing(sqlite3.connect(tmp_path / "spool.db")) as db:
        assert db.execute("SELECT lock_owner FROM messages WHERE id=?", (int(mid),)).fetchall() == [(None,)]


async def test_a_message_claimed_while_its_last_attempt_is_ending_is_attempted(
    tmp_path: Path, clock: FakeClock
) -> None:
    """An attempt hands its message back due at once (a retry-after of 0), and a claim leases it again
    before that attempt has ended (the answer to its unlock still on its way, as with a pooled database
    connection): the claimed message is this spooler's to attempt, not left leased until its lease
    (300 s) is over."""
    remote = scripted(temp_fail=["a@remote.test"], temp_fail_times=1, retry_after=0)
    async with spooler(tmp_path, clock, {"remote": remote}, spooler={"retry": {"min_hint": 0}}) as h:
        unlock, claim = h.store.unlock, h.store.claim  # type: ignore[attr-defined]
        handed_back, claimed_again, answered = anyio.Event(), anyio.Event(), anyio.Event()

        async def slow_unlock(message_id: str, owner: str, *, retry_at: float | None = None) -> None:
            await unlock(message_id, owner, retry_at=retry_at)
            if not handed_back.is_set():
                handed_back.set()
                await answered.wait()

        async def watched_claim(owner: str, lease: float, limit: int) -> Any:
            taken = await claim(owner, lease, limit)
            if handed_back.is_set() and taken:
                claimed_again.set()
            return taken

        h.store.unlock = slow_unlock  # type: ignore[method-assign]
        h.store.claim = watched_claim  # type: ignore[attr-defined]
        mid = await h.submit("a@remote.test")
        with anyio.fail_after(10):
            await handed_back.wait()  # deferred, due now, unlocked; the attempt has not ended
            h.spooler.wake()
            await claimed_again.wait()
        answered.set()
        await h.finished(mid)
        assert [m for m, _, _ in h.transport("remote").delivered] == [mid]


async def test_handing_back_a_lost_claim_spares_a_message_a_flush_began_meanwhile(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A claim's answer was lost; once the store answers, its batch is handed back one message at a
    time. A flush that begins an attempt of one of them meanwhile holds that lease: handing it back
    from under the attempt would let another daemon deliver it at the same time."""
    async with spooler(tmp_path, clock, {"remote": scripted()}) as h:
        remote = h.transport("remote")
        remote.gate = anyio.Event()
        claim, unlock = h.store.claim, h.store.unlock  # type: ignore[attr-defined]
        lost = [StoreUnavailable("connection lost at commit")]
        raised, handing_back, go, reclaimed = anyio.Event(), anyio.Event(), anyio.Event(), anyio.Event()
        taken_again: list[str] = []

        async def answer_lost_once(owner: str, lease: float, limit: int) -> Any:
            taken = await claim(owner, lease, limit)
            if lost and len(taken) == 2:
                raised.set()
                raise lost.pop()
            if raised.is_set():
                taken_again.extend(m.id for m in taken)
                reclaimed.set()
            return taken

        async def first_unlock_waits(message_id: str, owner: str, *, retry_at: float | None = None) -> None:
            if not handing_back.is_set():
                handing_back.set()
                await go.wait()
            await unlock(message_id, owner, retry_at=retry_at)

        h.store.claim = answer_lost_once  # type: ignore[attr-defined]
        later = clock.now + 60
        first = await h.submit("a@remote.test", not_before=later)
        second = await h.submit("b@remote.test", not_before=later)
        h.store.unlock = first_unlock_waits  # type: ignore[method-assign]
        clock.advance(60)
        h.spooler.wake()
        async with anyio.create_task_group() as tg:
            with anyio.fail_after(10):
                await raised.wait()
                await handing_back.wait()  # the first is being handed back
                tg.start_soon(partial(h.spooler.flush, message_ids=[second]))
                await remote.entered.wait()  # the flush's attempt of the second is under way
                go.set()
                await reclaimed.wait()
            remote.gate.set()
        assert first in taken_again and second not in taken_again  # its lease was the flush's
