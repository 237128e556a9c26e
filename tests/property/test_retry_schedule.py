"""The one retry schedule (spoolerd.retry.Schedule), property-tested: every backoff in spoolerd follows
it, so it must give a number for any failure count (a queue lifetime of months reaches counts where
``2 ** n`` overflows a float), never shorter than the wait before, never over its bound."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spoolerd.retry import Backoff, RetryPolicy, Schedule

_seconds = st.floats(min_value=1e-300, max_value=1e300, allow_nan=False, allow_infinity=False)
_multipliers = st.one_of(st.just(2.0), st.floats(min_value=1.0, max_value=1e10))
_counts = st.one_of(st.integers(min_value=-5, max_value=5000), st.integers(min_value=0, max_value=10**500))


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    return Schedule(draw(_seconds), draw(_seconds), draw(_multipliers))


@st.composite
def policies(draw: st.DrawFn) -> RetryPolicy:
    return RetryPolicy(
        draw(_seconds), draw(_seconds), draw(_multipliers), draw(_seconds), draw(st.floats(0, 1e6))
    )


@given(schedules(), _counts, _counts)
def test_the_waits_never_shrink_and_stay_within_bounds(schedule: Schedule, n: int, m: int) -> None:
    low, high = sorted((n, m))
    first, second = schedule.delay(low), schedule.delay(high)
    assert first <= second
    for wait in (first, second):
        assert math.isfinite(wait)
        assert min(schedule.initial, schedule.maximum) <= wait <= schedule.maximum


@given(schedules())
def test_the_first_wait_is_the_initial_one_and_the_last_the_maximum(schedule: Schedule) -> None:
    assert schedule.delay(1) == min(schedule.initial, schedule.maximum)
    if schedule.multiplier > 1:
        assert schedule.delay(10**400) == schedule.maximum


@given(policies(), _counts, st.one_of(st.none(), st.floats()))
def test_a_message_retry_is_a_number_within_the_lifetime_whatever_the_hint(
    policy: RetryPolicy, attempts: int, hint: float | None
) -> None:
    wait = policy.delay(attempts, hint)
    assert (math.isfinite(wait) and wait > 0) or wait == policy.min_hint == 0
    if hint is None or math.isnan(hint):
        assert wait == Schedule.delay(policy, attempts)
    else:
        assert (
            min(policy.min_hint, policy.give_up_after) <= wait <= max(policy.give_up_after, policy.min_hint)
        )
    assert policy.next_attempt(0.0, attempts, 0.0, hint) == wait


@given(schedules(), st.lists(st.booleans(), max_size=60))
def test_a_backoff_follows_its_schedule_and_starts_over_after_a_success(
    schedule: Schedule, outcomes: list[bool]
) -> None:
    backoff, run = Backoff(schedule), 0
    for succeeded in outcomes:
        if succeeded:
            backoff.reset()
            run = 0
        else:
            run += 1
            assert backoff.failed() == schedule.delay(run)


@pytest.mark.parametrize(
    ("initial", "maximum", "multiplier"),
    [(0, 1, 2), (-1, 1, 2), (1, math.inf, 2), (math.nan, 1, 2), (1, 2, 0.5), (1, 2, math.inf)],
)
def test_a_schedule_that_could_not_be_followed_is_refused(
    initial: float, maximum: float, multiplier: float
) -> None:
    with pytest.raises(ValueError, match="retry schedule"):
        Schedule(initial, maximum, multiplier)


def test_the_config_refuses_an_infinite_wait() -> None:
    from pydantic import ValidationError

    from spoolerd.config import RetrySection

    with pytest.raises(ValidationError, match="finite"):
        RetrySection(maximum=math.inf)
