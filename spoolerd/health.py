"""Whether each store answers: a store that fails (a full disk, a database gone) is a state, not a flood.

The spooler reports every store error here. The first one marks the store's status row failing: one
warning with the reason, a ``status_changed`` event (spoolerd/resource_state.py), and the store is left
alone for a wait that doubles up to a minute (``Backoff``) while it keeps failing. The first success
after that marks it online again, with one line and one event. ``spoolerctl status`` shows the state,
the last error and since when.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .events import SpoolerEvent
from .resource_state import ResourceState, StatusChanges
from .retry import Backoff
from .store import Clock

__all__ = ["StoreHealth", "StoreState"]


@dataclass(slots=True)
class StoreState:
    resource: ResourceState  # its status row's state: failing (the last error, since when) or online
    resume_at: float = 0.0  # by the monotonic clock: while failing, not tried again before this
    backoff: Backoff = field(default_factory=Backoff)

    @property
    def failing(self) -> bool:
        return bool(self.resource.problems)


class StoreHealth:
    def __init__(
        self,
        names: list[str],
        clock: Clock,
        publish: Callable[[SpoolerEvent], None],
        monotonic: Clock = time.monotonic,
    ) -> None:
        self.changes = StatusChanges(clock, publish)  # the spooler's clock (what status shows)
        self.monotonic = monotonic  # waits run on this one
        self.states = {name: StoreState(ResourceState("store", name)) for name in names}

    def any_failing(self) -> bool:
        return any(state.failing for state in self.states.values())

    def wait(self, name: str) -> float:
        """Seconds before a failing store is tried again (0: it may be used now)."""
        return max(0.0, self.states[name].resume_at - self.monotonic())

    def failed(self, name: str, error: BaseException) -> None:
        state, now = self.states[name], self.monotonic()
        reason = str(error) or type(error).__name__
        if state.resume_at > now:
            state.resource.last_error = reason
            return  # one of the operations begun before the wait: the store is not tried again yet
        state.resume_at = now + state.backoff.failed()
        self.changes.fail(state.resource, "store", reason)  # failing: one line and one event

    def succeeded(self, name: str) -> None:
        state = self.states[name]
        if not state.failing:
            return
        state.resume_at = 0.0
        state.backoff.reset()
        self.changes.recover(state.resource, "store")  # online again: one line and one event
