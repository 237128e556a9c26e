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

__all__ = ["DestinationCache", "RetryPolicy"]


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
    """

    hold: float = 300.0
    _dead: dict[str, float] = field(default_factory=dict)

    def failed(self, destination: str, now: float, hint: float | None = None) -> None:
        if len(self._dead) >= 4096:  # forget what has expired, so the cache does not grow forever
            self._dead = {d: until for d, until in self._dead.items() if until > now}
        self._dead[destination] = now + max(self.hold, hint or 0.0)

    def succeeded(self, destination: str) -> None:
        self._dead.pop(destination, None)

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
