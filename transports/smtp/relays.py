"""Which of a transport's relays to try, and in what order, with no I/O (the clock is passed in).

A relay that cannot be reached, refuses TLS or the login, or answers 421 is down for ``hold`` seconds
(the spooler's ``destination_hold``): an attempt tries the relays that are not held, in their
configured order, so the first relay takes mail again as soon as its hold is over. When every relay is
held, all are tried in order all the same: the spooler has already held the transport's destination by
then, so this is a forced flush or the spooler's own retry, and neither should be refused unheard. A
relay is down from its first failure until it answers again, so each change is reported once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["RelayState", "Relays"]


@dataclass(slots=True)
class RelayState:
    peer: str
    down_since: float | None = None
    held_until: float = 0.0
    last_error: str | None = None

    def row(self, now: float) -> dict[str, Any]:
        """This relay in the transport's status row."""
        return {
            "relay": self.peer,
            "state": "up" if self.down_since is None else "down",
            "since": self.down_since,
            "retry_in": round(self.held_until - now, 1) if self.held_until > now else None,
            "last_error": self.last_error,
        }


class Relays:
    def __init__(self, peers: list[str], hold: float) -> None:
        self.hold = hold
        self._states = [RelayState(peer) for peer in peers]
        self._by_peer = {state.peer: state for state in self._states}

    def order(self, now: float) -> list[str]:
        """The relays to try for one attempt, in order."""
        ready = [s.peer for s in self._states if s.held_until <= now]
        return ready or [s.peer for s in self._states]

    def failed(self, peer: str, now: float, reason: str) -> bool:
        """``peer`` is held for ``hold``; True when it has just gone down (it was not down already)."""
        state = self._by_peer[peer]
        state.held_until = now + self.hold
        state.last_error = reason
        if state.down_since is not None:
            return False
        state.down_since = now
        return True

    def answered(self, peer: str) -> float | None:
        """``peer`` took part in a transaction; if it was down, it is up again: since when it was down."""
        state = self._by_peer[peer]
        since, state.down_since, state.held_until = state.down_since, None, 0.0
        return since

    def rows(self, now: float) -> list[dict[str, Any]]:
        return [state.row(now) for state in self._states]
