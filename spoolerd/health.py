"""Whether each store answers: a store that fails (a full disk, a database gone) is a state, not a flood.

The spooler reports every store error here. The first one marks the store failing: one warning with the
reason, a ``status_changed`` event, and the store is left alone for a wait that doubles up to a minute
(``Backoff``) while it keeps failing. The first success after that marks it available again, with one
line and one event. ``spoolerctl status`` shows the state, the last error and since when.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import structlog

from .events import SpoolerEvent, StoreStateChanged
from .retry import Backoff
from .store import Clock

__all__ = ["StoreHealth", "StoreState"]

log = structlog.get_logger("spoolerd.health")


@dataclass(slots=True)
class StoreState:
    failing_since: float | None = None  # by the spooler's clock, for people
    last_error: str | None = None
    resume_at: float = 0.0  # by the monotonic clock: while failing, not tried again before this
    backoff: Backoff = field(default_factory=Backoff)

    @property
    def failing(self) -> bool:
        return self.failing_since is not None


class StoreHealth:
    def __init__(
        self,
        names: list[str],
        clock: Clock,
        publish: Callable[[SpoolerEvent], None],
        monotonic: Clock = time.monotonic,
    ) -> None:
        self.clock = clock  # the spooler's (what status shows); waits run on ``monotonic``
        self.monotonic = monotonic
        self.publish = publish
        self.states = {name: StoreState() for name in names}

    def wait(self, name: str) -> float:
        """Seconds before a failing store is tried again (0: it may be used now)."""
        return max(0.0, self.states[name].resume_at - self.monotonic())

    def failed(self, name: str, error: BaseException) -> None:
        state, now = self.states[name], self.monotonic()
        reason = str(error) or type(error).__name__
        state.last_error = reason
        if state.resume_at > now:
            return  # one of the operations begun before the wait: the store is not tried again yet
        wait = state.backoff.failed()
        state.resume_at = now + wait
        if state.failing_since is None:
            state.failing_since = self.clock()
            log.warning("store failing", store=name, error=reason, retry_in=wait)
            self._changed(name, "failing", error=reason)

    def succeeded(self, name: str) -> None:
        state = self.states[name]
        if state.failing_since is None:
            return
        down = self.clock() - state.failing_since
        state.failing_since, state.resume_at = None, 0.0
        state.backoff.reset()
        log.warning("store available again", store=name, failing_for=round(down, 1))
        self._changed(name, "available")

    def _changed(self, name: str, state: Literal["failing", "available"], error: str | None = None) -> None:
        event = StoreStateChanged(type="status_changed", resource_type="store", name=name, state=state)
        if error is not None:
            event["error"] = error
        self.publish(event)
