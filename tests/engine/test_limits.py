"""Per-destination limits (spoolerd/delivery/limits.py) in memory: a limit lives while attempts use its
destination, a dead destination defers without a try, and going down / up is published once each."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from spoolerd_testplugins.transports import ScriptedSettings, ScriptedTransport

from spoolerd.delivery.limits import DestinationLimits
from spoolerd.retry import DestinationCache
from spoolerd.slot import TransportSlot
from spoolerd.testing import FakeClock
from spoolerd.transport import Outcome, OutcomeKind, TransportContext


def limits_and_events(clock: FakeClock) -> tuple[DestinationLimits, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    return DestinationLimits(DestinationCache(hold=300.0), clock, events.append), events


async def test_a_destination_keeps_one_limit_while_attempts_use_it_and_none_after() -> None:
    limits, _ = limits_and_events(FakeClock(1000.0))
    with limits.use("relay:mx", 2) as first, limits.use("relay:mx", 9) as second:
        assert first is second  # one limit per destination, sized by the first user
        async with first, second:
            assert first.locked()  # two in: a third waits
        with limits.use("relay:other", 1) as other:
            assert other is not first
    with limits.use("relay:mx", 1) as fresh:
        assert fresh is not first  # the idle destination kept nothing
    with pytest.raises(RuntimeError), limits.use("relay:mx", 1) as failing:
        raise RuntimeError("the attempt broke")
    with limits.use("relay:mx", 3) as again:
        assert again is not failing  # a failed attempt leaves no user behind
        assert isinstance(again, asyncio.Semaphore)


def test_a_dead_destination_defers_without_a_try_until_due_unless_forced() -> None:
    clock = FakeClock(1000.0)
    limits, _ = limits_and_events(clock)
    assert limits.dead("relay:mx", 2, force=False) is None
    limits.cache.failed("relay:mx", clock())
    answers = limits.dead("relay:mx", 2, force=False)
    assert answers is not None and len(answers) == 2
    (outcome,) = set(answers)
    assert (outcome.kind, outcome.status, outcome.attempted) == (OutcomeKind.DEFERRED, "4.4.1", False)
    assert outcome.retry_after == 300.0 and "destination mx is not responding" in outcome.diagnostic
    assert limits.dead("relay:mx", 1, force=True) is None
    clock.advance(300.0)
    assert limits.dead("relay:mx", 1, force=False) is None


def test_down_and_up_are_published_once_per_change() -> None:
    clock = FakeClock(1000.0)
    limits, events = limits_and_events(clock)
    slot = TransportSlot(
        ScriptedTransport(ScriptedSettings(), TransportContext("relay")), asyncio.Semaphore(1)
    )
    no_answer = Outcome.deferred("connection refused", None, "4.4.1")
    limits.observe(slot, "mx", "relay:mx", [no_answer, no_answer])
    limits.observe(slot, "mx", "relay:mx", [no_answer])  # still down: no second event
    limits.observe(slot, "mx", "relay:mx", [Outcome.deferred("mailbox busy", 450, "4.2.0")])  # one mailbox
    assert [(e["state"], e["last_error"]) for e in events] == [("failing", "4.4.1 connection refused")]
    assert slot.down == {"mx": "connection refused"}
    assert limits.cache.dead_until("relay:mx", clock()) == 1600.0  # failed twice in a row: 300 then 600
    assert limits.renewed == {"relay:mx": 1600.0}
    clock.advance(10.0)
    limits.observe(slot, "mx", "relay:mx", [no_answer, Outcome.delivered()])
    assert [(e["state"], e["since"]) for e in events[1:]] == [("online", 1010.0)]
    assert slot.down == {} and limits.cache.dead_until("relay:mx", clock()) is None


def test_deferrals_without_a_try_do_not_hold_the_destination_again() -> None:
    """Only a real failure renews (and lengthens) a hold: the messages deferred behind it say nothing."""
    clock = FakeClock(1000.0)
    limits, _ = limits_and_events(clock)
    slot = TransportSlot(
        ScriptedTransport(ScriptedSettings(), TransportContext("relay")), asyncio.Semaphore(1)
    )
    limits.observe(slot, "mx", "relay:mx", [Outcome.deferred("connection refused", None, "4.4.1")])
    assert limits.renewed == {"relay:mx": 1300.0}
    limits.renewed.clear()
    clock.advance(100.0)
    untried = limits.dead("relay:mx", 3, force=False)
    assert untried is not None
    limits.observe(slot, "mx", "relay:mx", untried)
    assert limits.cache.dead_until("relay:mx", clock()) == 1300.0 and limits.renewed == {}
    assert limits.cache.consecutive_failures() == {"relay:mx": 1}
