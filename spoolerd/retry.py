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

__all__ = ["Backoff", "DestinationCache", "RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    initial: float = 300.0
    maximum: float = 4000.0
    multiplier: float = 2.0
    give_up_after: float = 5 * 86400.0
    min_hint: float = 60.0  # a retry-after hint below this is raised to it (no hammering)

    def delay(self, attempts: int, hint: float | None = None) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1 = the first failure)."""
        steps = max(attempts - 1, 0)
        if self.multiplier > 1:
            # past this many doublings the maximum is reached: a long queue lifetime's thousandth
            # attempt must not overflow a float
            ratio = max(self.maximum / self.initial, 1.0)
            steps = min(steps, math.ceil(math.log(ratio, self.multiplier)))
        backoff = min(self.initial * self.multiplier**steps, self.maximum)
        if hint is not None:
            return max(hint, self.min_hint)
        return backoff

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
    its ``minimal_backoff_time``); a success clears it. Messages to a dead destination are deferred
    without a connection attempt; ``flush --force`` ignores the cache.

    It also decides when a destination goes down and comes up again, for the log and the status row:
    down at its first failure, and down it stays (whatever the hold) until a success. So each change is
    reported once, not once per message or per hold.
    """

    hold: float = 300.0
    _dead: dict[str, float] = field(default_factory=dict)
    _down: dict[str, float] = field(default_factory=dict)  # destination -> down since (until a success)
    _failures: dict[str, int] = field(default_factory=dict)  # destination -> failures since its last success

    def failed(self, destination: str, now: float, hint: float | None = None) -> bool:
        """Hold ``destination``; True when it has just gone down (it was not down already)."""
        if len(self._dead) >= 4096:  # forget what has expired, so the cache does not grow forever
            self._dead = {d: until for d, until in self._dead.items() if until > now}
        self._dead[destination] = now + max(self.hold, hint or 0.0)
        self._failures[destination] = self._failures.get(destination, 0) + 1
        if destination in self._down:
            return False
        self._down[destination] = now
        return True

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
    """Waits that double from ``initial`` to ``maximum`` while something keeps failing, and start over
    once it works again: how long to leave a failing store or connection alone."""

    initial: float = 1.0
    maximum: float = 60.0
    _next: float = 0.0

    def failed(self) -> float:
        """The wait after one more failure."""
        wait = self._next or self.initial
        self._next = min(wait * 2, self.maximum)
        return wait

    def reset(self) -> None:
        self._next = 0.0
