"""Retry timing, with no I/O: per-message backoff, give-up, and the per-destination failure cache.

Defaults follow Postfix: the first retry 5 minutes after a temporary failure, doubling up to about
67 minutes (``minimal_backoff_time = 300s``, ``maximal_backoff_time = 4000s``), and a message that is
still undeliverable 5 days after submission is returned (``maximal_queue_lifetime = 5d``) with 4.4.7.
A transport's own retry-after hint is honoured as given (MAPI's "resubmit after N seconds"), but never
sooner than a minute. A destination that is known dead is not tried and costs no attempt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["Backoff", "DestinationCache", "RetryPolicy", "Schedule"]


@dataclass(frozen=True, slots=True)
class Schedule:
    """Waits that grow by ``multiplier`` from ``initial`` up to ``maximum``: the one shape of every retry
    in spoolerd (a message's next attempt, a failing store, a lost connection, a failed download). The
    n-th wait depends on n alone: never shorter than the one before, never over ``maximum`` (nor
    ``initial``, if that is larger), and a number for any n: no overflow however long it keeps failing."""

    initial: float
    maximum: float
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if not all(math.isfinite(x) and x > 0 for x in (self.initial, self.maximum)):
            raise ValueError(
                f"a retry schedule's waits are positive numbers, not {self.initial}, {self.maximum}"
            )
        if not (math.isfinite(self.multiplier) and self.multiplier >= 1):
            raise ValueError(
                f"a retry schedule's multiplier is a number of at least 1, not {self.multiplier}"
            )

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1: the first)."""
        try:
            grown = self.initial * self.multiplier ** max(failures - 1, 0)
        except OverflowError:  # past the largest float, so past the maximum (a month of attempts)
            return self.maximum
        return min(grown, self.maximum)


@dataclass(frozen=True, slots=True)
class RetryPolicy(Schedule):
    """A message's retries: the ``Schedule``, the queue lifetime, and how a transport's hint is taken."""

    initial: float = 300.0
    maximum: float = 4000.0
    multiplier: float = 2.0
    give_up_after: float = 5 * 86400.0
    min_hint: float = 60.0  # a retry-after hint below this is raised to it (no hammering)

    def delay(self, failures: int, hint: float | None = None) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1 = the first failure): a
        transport's hint if it gave one, at least ``min_hint`` and at most the queue lifetime (a message
        is not left waiting past the time it is returned); else the schedule."""
        if hint is None or math.isnan(hint):
            return Schedule.delay(self, failures)
        return min(max(hint, self.min_hint), max(self.give_up_after, self.min_hint))

    def expired(self, submitted_at: float, now: float) -> bool:
        """Whether a message submitted at ``submitted_at`` has been queued too long to try again."""
        return now - submitted_at >= self.give_up_after

    def next_attempt(
        self, submitted_at: float, attempts: int, now: float, hint: float | None = None
    ) -> float | None:
        """When to try again, or ``None`` when the message's lifetime is over."""
        if self.expired(submitted_at, now):
            return None
        return now + self.delay(attempts, hint)


@dataclass(slots=True)
class DestinationCache:
    """Destinations that failed temporarily, and until when nobody should try them again.

    One failure marks a destination dead for ``hold`` seconds (Postfix keeps a dead destination for
    its ``minimal_backoff_time``), and each further failure in a row twice as long as the one before,
    up to ``maximum`` (a message's longest wait): a relay that stays dead is tried less and less often.
    A success clears it. Messages to a dead destination are deferred without a connection attempt;
    ``flush --force`` ignores the cache.

    It also decides when a destination goes down and comes up again, for the log and the status row:
    down at its first failure, and down it stays (whatever the hold) until a success. So each change is
    reported once, not once per message or per hold.
    """

    hold: float = 300.0
    maximum: float = 4000.0
    _dead: dict[str, float] = field(default_factory=dict)
    _down: dict[str, float] = field(default_factory=dict)  # destination -> down since (until a success)
    _failures: dict[str, int] = field(default_factory=dict)  # destination -> failures since its last success

    def failed(self, destination: str, now: float, hint: float | None = None) -> bool:
        """Hold ``destination``; True when it has just gone down (it was not down already)."""
        if len(self._dead) >= 4096:  # forget what has expired, so the cache does not grow forever
            self._dead = {d: until for d, until in self._dead.items() if until > now}
        failures = self._failures[destination] = self._failures.get(destination, 0) + 1
        self._dead[destination] = now + max(self.hold_after(failures), hint or 0.0)
        if destination in self._down:
            return False
        self._down[destination] = now
        return True

    def hold_after(self, failures: int) -> float:
        """How long a destination is held after ``failures`` failures in a row."""
        if self.hold <= 0:
            return 0.0
        return Schedule(self.hold, max(self.hold, self.maximum)).delay(failures)

    def is_down(self, destination: str) -> bool:
        """Whether ``destination`` failed and has not succeeded since (held or not)."""
        return destination in self._down

    def succeeded(self, destination: str) -> float | None:
        """Clear ``destination``; if it was down, it is up again: when it went down."""
        self._dead.pop(destination, None)
        self._failures.pop(destination, None)
        return self._down.pop(destination, None)

    def consecutive_failures(self) -> dict[str, int]:
        """Each destination that failed since its last success, and how many times in a row."""
        return dict(self._failures)

    def dead_until(self, destination: str, now: float) -> float | None:
        until = self._dead.get(destination)
        if until is None:
            return None
        if until <= now:
            del self._dead[destination]
            return None
        return until

    def clear(self) -> None:
        self._dead.clear()
        self._down.clear()
        self._failures.clear()


@dataclass(slots=True)
class Backoff:
    """A ``Schedule`` followed while something keeps failing, started over once it works again: how
    long to leave a failing store, server or connection alone."""

    schedule: Schedule = field(default_factory=lambda: Schedule(1.0, 60.0))
    failures: int = 0  # in a row, since the last success

    def failed(self) -> float:
        """The wait after one more failure."""
        self.failures += 1
        return self.schedule.delay(self.failures)

    def reset(self) -> None:
        self.failures = 0
