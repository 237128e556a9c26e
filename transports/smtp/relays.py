"""Which of a transport's relays to try, in what order, and what each recipient ends with, with no I/O
(the clock is passed in).

A relay that cannot be reached, refuses TLS or the login, or answers 421 is down for ``hold`` seconds
(the spooler's ``destination_hold``): an attempt tries the relays that are not held, in their
configured order, so the first relay takes mail again as soon as its hold is over. When every relay is
held, all are tried in order all the same: the spooler has already held the transport's destination by
then, so this is a forced flush or the spooler's own retry, and neither should be refused unheard. A
relay is down from its first failure until it answers again, so each change is reported once.

``Attempt`` follows one ``send`` across the relays: a recipient a relay deferred goes on to the next;
one it delivered or refused for good is done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spoolerd.transport import Outcome, OutcomeKind

__all__ = ["Attempt", "Delivery", "RelayState", "Relays"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """An outcome per recipient from one relay; ``down``: why the relay is not taking mail (it cannot
    be reached, refused TLS or the login, or answered 421), or None."""

    outcomes: list[Outcome]
    down: Outcome | None = None

    @property
    def answered(self) -> bool:
        """The relay took part: it is not down, and not every recipient went without a reply."""
        return self.down is None and not all(
            o.kind is OutcomeKind.DEFERRED and o.code is None for o in self.outcomes
        )


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


class Attempt:
    """One ``send`` across the relays, in order: ``waiting`` are the positions the next relay is given,
    ``tried`` records what that relay did with them, ``outcomes`` is each recipient's final outcome."""

    def __init__(self, count: int, *, several: bool) -> None:
        self._tried: list[list[Outcome]] = [[] for _ in range(count)]  # per recipient, each relay's
        self._several = several
        self._every_one_down = True
        self.waiting = list(range(count))

    def tried(self, delivery: Delivery) -> None:
        self._every_one_down = self._every_one_down and delivery.down is not None
        for i, outcome in zip(self.waiting, delivery.outcomes, strict=True):
            self._tried[i].append(outcome)
        self.waiting = [i for i in self.waiting if self._tried[i][-1].kind is OutcomeKind.DEFERRED]

    def outcomes(self) -> list[Outcome]:
        if not self._several:
            return [outcomes[-1] for outcomes in self._tried]
        return [self._final(outcomes) for outcomes in self._tried]

    def _final(self, outcomes: list[Outcome]) -> Outcome:
        """The last outcome, unless that is a deferral without a reply while an earlier relay did reply
        about the recipient. When every relay tried was found down, a deferral gives each relay's reason
        and names none of them, without a reply code: so the spooler holds the transport's list of
        relays as one destination, not one of them."""
        last = outcomes[-1]
        if last.kind is not OutcomeKind.DEFERRED:
            return last
        if self._every_one_down:
            diagnostic = "; ".join(o.diagnostic for o in outcomes)
            status = next((o.status for o in reversed(outcomes) if o.code is None), last.status)
            return Outcome(OutcomeKind.DEFERRED, None, status, diagnostic, last.retry_after)
        if last.code is None:
            return next((o for o in reversed(outcomes) if o.code is not None), last)
        return last
