"""A dead relay with many messages queued (#17): once the destination is held, its hold ending costs a
few attempts (the first finds it still dead, its hold grows, and the rest are postponed in one
statement), not one attempt per queued message."""

from __future__ import annotations

from pathlib import Path

import anyio

from tests.conftest import FakeClock
from tests.engine.harness import Harness, spooler

MESSAGES, IN_FLIGHT, HOLD = 40, 4, 60.0


async def test_a_held_destination_costs_a_few_attempts_per_hold_not_one_per_message(
    tmp_path: Path, clock: FakeClock
) -> None:
    transports = {"relay": {"provider": "test-scripted", "connection_down": True}}
    settings = {"max_in_flight": IN_FLIGHT, "retry": {"destination_hold": HOLD}}
    async with spooler(tmp_path, clock, transports, spooler=settings) as h:
        attempts: list[str] = []
        enough = anyio.Event()

        def observe(store: str, message_id: str, seconds: float) -> None:
            attempts.append(message_id)
            if len(attempts) >= MESSAGES:
                enough.set()

        h.spooler.attempt_observers.append(observe)
        for _ in range(MESSAGES):
            await h.submit("x@dead.test")
        with anyio.fail_after(30):
            await enough.wait()  # the first pass: each message tried once, or deferred behind the hold
            await settled(h)
        assert await h.store.next_due() == clock.now + HOLD  # all of them at the hold's end
        relay = h.transport("relay")
        sends_before, attempts[:] = len(relay.calls), []

        clock.advance(HOLD)  # the hold ends: still dead
        h.spooler.wake()
        with anyio.fail_after(30):
            await settled(h)
        assert len(relay.calls) == sends_before + 1  # one message tried the relay
        assert len(attempts) < MESSAGES / 2  # the others were not locked one by one
        assert await h.store.next_due() == clock.now + 2 * HOLD  # held twice as long, everyone
        assert h.spooler.counters.delivered == 0


async def settled(h: Harness) -> None:
    """Until nothing is in flight and nothing is due: each turn waits for the attempts of the last."""
    while True:
        for done in h.spooler.in_flight_now():
            await done.wait()
        await anyio.sleep(0.05)  # the scheduler's rescan after the last finished attempt
        due = await h.store.next_due()
        if not h.spooler.in_flight and (due is None or due > h.clock.now):
            return
