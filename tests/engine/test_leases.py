"""The lease renewer (spoolerd/delivery/leases.py) in memory: it sleeps without a timer while no lease is
held, whatever order the last lease's end and the renewer's own wake-up come in."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import anyio

from spoolerd.delivery.leases import Leases
from spoolerd.store import MessageStore

LEASE = 0.3  # a renewal timer every 0.1 s: a stray one shows within the window below


async def test_a_lease_over_before_the_renewer_wakes_leaves_no_timer() -> None:
    """The renewer, woken by a lease that has ended by the time it runs, goes back to sleep rather
    than arm a renewal timer for nothing (a stray wake-up a third of a lease later)."""
    leases = Leases(LEASE)
    store = cast(MessageStore, object())  # never renewed: no lease is held when a timer could fire
    async with anyio.create_task_group() as tg:
        tg.start_soon(leases.renew)
        await asyncio.sleep(0)  # the renewer is asleep, waiting for a lease
        for _ in range(3):
            async with leases.leased(store, "1", "me"):
                pass  # begun and over before the renewer runs
            await asyncio.sleep(0)  # the renewer runs now
        await anyio.sleep(LEASE)  # a window of three renewal periods, not a wait for state
        assert leases.renewal_timers == 0
        tg.cancel_scope.cancel()


async def test_a_held_lease_is_renewed_every_third_of_it() -> None:
    renewed: list[str] = []
    twice = anyio.Event()

    class Store:
        name = "s"

        async def renew(self, message_id: str, owner: str, lease: float) -> None:
            renewed.append(message_id)
            if len(renewed) == 2:
                twice.set()

    leases = Leases(LEASE)
    async with anyio.create_task_group() as tg:
        tg.start_soon(leases.renew)
        async with leases.leased(cast(Any, Store()), "7", "me"):
            with anyio.fail_after(5):
                await twice.wait()
        assert leases.renewal_timers >= 2
        tg.cancel_scope.cancel()


async def test_a_lease_taken_as_the_last_one_ends_is_not_renewed_at_once() -> None:
    """The renewer woken because the last lease ended renews nothing, not even a lease taken since:
    it is fresh (a renewal racing that attempt's finish would take the finish for a lost lease)."""
    renewed: list[str] = []

    class Store:
        name = "s"

        async def renew(self, message_id: str, owner: str, lease: float) -> None:
            renewed.append(message_id)

    store = cast(Any, Store())
    leases = Leases(60.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(leases.renew)
        async with leases.leased(store, "1", "me"):
            await asyncio.sleep(0.01)  # the renewer arms its timer for this lease
        async with leases.leased(store, "2", "me"):  # begun before the renewer sees the first end
            for _ in range(5):
                await asyncio.sleep(0)
            assert renewed == []
        tg.cancel_scope.cancel()
