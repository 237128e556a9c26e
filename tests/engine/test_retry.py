"""Retry timing (sans-io): Postfix-like backoff, give-up after the queue lifetime, the destination cache."""

from __future__ import annotations

import pytest

from spoolerd.retry import DestinationCache, RetryPolicy


def test_backoff_doubles_from_five_minutes_to_about_67() -> None:
    policy = RetryPolicy()
    assert [policy.delay(n) for n in range(1, 8)] == [300, 600, 1200, 2400, 4000, 4000, 4000]


def test_a_transport_hint_is_honoured_but_never_below_a_minute() -> None:
    policy = RetryPolicy()
    assert policy.delay(1, hint=1800) == 1800
    assert policy.delay(5, hint=5) == 60


@pytest.mark.parametrize(
    ("age", "expected"), [(0, 1000.0 + 300), (5 * 86400 - 1, 5 * 86400 - 1 + 1000.0 + 300)]
)
def test_next_attempt_inside_the_lifetime(age: float, expected: float) -> None:
    policy = RetryPolicy()
    assert policy.next_attempt(submitted_at=1000.0, attempts=1, now=1000.0 + age) == expected


def test_give_up_after_the_lifetime() -> None:
    policy = RetryPolicy(give_up_after=3600)
    assert policy.next_attempt(submitted_at=0.0, attempts=3, now=3600.0) is None
    assert policy.expired(0.0, 3600.0) and not policy.expired(0.0, 3599.0)


def test_destination_cache_holds_a_dead_destination_until_it_is_due() -> None:
    cache = DestinationCache(hold=300)
    cache.failed("relay.example.org", now=100.0)
    assert cache.dead_until("relay.example.org", 100.0) == 400.0
    assert cache.dead_until("other.example.org", 100.0) is None
    assert cache.dead_until("relay.example.org", 400.0) is None  # expired entries are forgotten
    cache.failed("relay.example.org", now=500.0, hint=900)
    assert cache.dead_until("relay.example.org", 500.0) == 1400.0
    cache.succeeded("relay.example.org")
    assert cache.dead_until("relay.example.org", 500.0) is None


def test_a_destination_failing_again_is_held_twice_as_long_up_to_the_maximum() -> None:
    cache = DestinationCache(hold=300, maximum=4000)
    now, holds = 0.0, []
    for _ in range(7):
        cache.failed("relay:mx", now)
        until = cache.dead_until("relay:mx", now)
        assert until is not None
        holds.append(until - now)
        now = until
    assert holds == [300, 600, 1200, 2400, 4000, 4000, 4000]
    assert cache.is_down("relay:mx")
    cache.succeeded("relay:mx")
    cache.failed("relay:mx", now)
    assert cache.dead_until("relay:mx", now) == now + 300  # a success starts it over
    assert not cache.is_down("other") and DestinationCache(hold=0).hold_after(5) == 0


@pytest.mark.parametrize("attempts", [1025, 10_000, 2**40])
def test_a_thousandth_attempt_waits_the_maximum_and_does_not_overflow(attempts: int) -> None:
    """A queue lifetime of months reaches attempt numbers where 2 ** n overflows a float."""
    assert RetryPolicy().delay(attempts) == 4000
    assert RetryPolicy(initial=1.0, maximum=1e300, multiplier=10.0).delay(attempts) == 1e300


def test_the_backoff_is_monotonic_and_bounded() -> None:
    for policy in (RetryPolicy(), RetryPolicy(initial=7, maximum=7), RetryPolicy(initial=50, maximum=10)):
        delays = [policy.delay(n) for n in range(1, 2000)]
        assert delays == sorted(delays)
        assert max(delays) <= max(policy.maximum, policy.initial)


def test_backoff_doubles_to_its_maximum_and_starts_over() -> None:
    from spoolerd.retry import Backoff, Schedule

    backoff = Backoff(Schedule(initial=1, maximum=10))
    assert [backoff.failed() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    backoff.reset()
    assert backoff.failed() == 1


def test_store_health_changes_state_once_and_ignores_failures_begun_before_the_wait() -> None:
    from spoolerd.health import StoreHealth
    from tests.conftest import FakeClock

    clock, events = FakeClock(), []
    health = StoreHealth(["local"], clock, events.append, monotonic=clock)
    for _ in range(20):  # twenty attempts in flight fail together: one state change, one wait
        health.failed("local", OSError("database or disk is full"))
    assert health.wait("local") == 1
    clock.advance(1)
    assert health.wait("local") == 0
    health.failed("local", OSError("still full"))
    assert health.wait("local") == 2
    health.succeeded("local")
    health.succeeded("local")
    assert [e["state"] for e in events] == ["failing", "online"]
    assert health.wait("local") == 0 and not health.states["local"].failing
