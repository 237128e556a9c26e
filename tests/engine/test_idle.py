"""An idle daemon arms no timer: once the last attempt is over and nothing is due, the event loop has
nothing scheduled that would wake it (only the Sent Items retention keeper's, days away)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import anyio

from tests.conftest import FakeClock
from tests.engine.harness import spooler

DAY = 86400.0


def timers_within(seconds: float) -> list[asyncio.TimerHandle]:
    """The live timers of asyncio's loop due within ``seconds``: each one a wake-up to come."""
    loop = asyncio.get_running_loop()
    scheduled: list[asyncio.TimerHandle] = loop._scheduled  # type: ignore[attr-defined]  # asyncio's heap
    return [h for h in scheduled if not h.cancelled() and h.when() < loop.time() + seconds]


async def test_an_idle_daemon_has_no_timer_armed_after_a_burst(tmp_path: Path) -> None:
    async with spooler(tmp_path, FakeClock(time.time()), spooler={"lease": 6}) as h:
        assert timers_within(DAY) == []  # started: asleep at once
        burst = [await h.submit("me@localhost") for _ in range(20)]  # attempts overlapping in flight
        for mid in burst:
            await h.finished(mid)
        with anyio.fail_after(10):
            await h.spooler.parked.wait()
        await asyncio.sleep(0)  # the renewer sees the last lease end
        assert timers_within(DAY) == []
        wakeups = h.spooler.loop_iterations
        await anyio.sleep(2.5)  # past one renewal period (lease / 3): a window, not a wait for state
        assert h.spooler.loop_iterations == wakeups
        assert h.spooler.dispatcher.leases.renewal_timers == 0
