"""Rate limits per destination, with no I/O: ``rate = "100/1m"`` and the budget that enforces it.

The budget is a sliding window log: the times of the sends of the last period (at most N of them), so
that no window of one period ever holds more than N sends, wherever it starts (a fixed window or a token
bucket of N would let 2N through across a boundary). A send that does not fit is not refused: its message
is given a *ticket*, the earliest time it fits behind every ticket already given, and the spooler defers
it until then (no attempt counted, no delivery slot held). A message back for its ticket sends if the
window has room. A ticket is planned a period after the send (or ticket) it replaces in the window, but
that send is recorded when its message came back, a little after its own ticket (the attempt's lock,
a claim behind others due at once): the window may still be full for those milliseconds when the next
ticket's message comes back on time. Such a holder is admitted for the moment the window frees, the
send recorded then, and its attempt waits for it, if that is within ``WAIT_AT_TURN``; only a holder
whose window frees later than that (behind a send seconds late, or back early for a flush) is told the
moment and deferred once more. A new message
sends at once only if no ticket is waiting and the window, tickets due included, has room, else it goes
behind the tickets. So waiting messages go in the order they asked and each is locked once more, not in
a loop. A ticket whose message has not come back a period and
``LATE`` after its time (it was aborted, say) lapses. At most ``MAX_TICKETS`` are given: a message behind
them is told to ask again a period after the last one (a queue of 10,000 for one destination asks about
ten times, not once a period).

Slow-down rule: a 421, 451 or 454 reply halves the destination's rate for ``SLOW_DOWN_FOR`` (10
minutes); another one within that time halves it again and starts the 10 minutes over, down to one
message per period; after 10 minutes without one the configured rate is back.

The whole state (``BudgetState``: the window's sends, the tickets, the slow-down) is written to the
store before each send it admits, so a daemon restarted mid-burst does not send another full burst.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field

from .duration import format_duration, parse_duration

__all__ = [
    "LATE",
    "MAX_TICKETS",
    "SLOW_DOWN_CODES",
    "SLOW_DOWN_FOR",
    "WAIT_AT_TURN",
    "Admission",
    "Budget",
    "BudgetState",
    "Rate",
    "Ticket",
    "parse_rate",
]

SLOW_DOWN_CODES = frozenset({421, 451, 454})  # "service not available", "local error", "try again later"
SLOW_DOWN_FOR = 600.0  # seconds a halving lasts after the last slow-down reply
LATE = 60.0  # a ticket lapses this long after its period if its message has not come back for it
MAX_TICKETS = 1000  # tickets given at most: the state written before each send stays small (tens of KB)
WAIT_AT_TURN = 1.0  # a ticket's holder waits this long at most in its attempt for the window to free

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\S+)\s*$")


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``messages`` sends to one destination in any ``per`` seconds."""

    messages: int
    per: float

    def __str__(self) -> str:
        return f"{self.messages}/{format_duration(self.per)}"


def parse_rate(text: object) -> Rate:
    """``"N/PERIOD"``: a count of messages and a duration (``"100/1m"``, ``"5/2s"``, ``"1000/1h"``); a bare
    unit is one of it (``"100/m"``). ValueError says what is wrong; pydantic adds the key."""
    if isinstance(text, Rate):
        return text
    found = _RATE.match(text) if isinstance(text, str) else None
    if found is None:
        raise ValueError(f"{text!r} is not messages/period (e.g. '100/1m', '5/2s')")
    messages, period = int(found.group(1)), found.group(2)
    per = parse_duration("1" + period if period.isalpha() else period)
    if messages < 1 or per <= 0:
        raise ValueError(f"{text!r}: at least 1 message in a period longer than 0 s")
    return Rate(messages, per)


@dataclass(frozen=True, slots=True)
class Ticket:
    """A waiting message's turn: ``at`` the time it may send, ``holder`` the message's id."""

    at: float
    holder: str


@dataclass(slots=True)
class BudgetState:
    """What survives a restart: the sends of the last period and the tickets given (each in time order),
    and the slow-down: ``halvings`` in force until ``slowed_until``."""

    sent: list[float] = field(default_factory=list)
    tickets: list[Ticket] = field(default_factory=list)
    halvings: int = 0
    slowed_until: float = 0.0

    def encode(self) -> bytes:
        tickets = [[t.at, t.holder] for t in self.tickets]
        return json.dumps([self.sent, tickets, self.halvings, self.slowed_until]).encode()

    @classmethod
    def decode(cls, data: bytes) -> BudgetState:
        """The state ``encode`` wrote; anything unreadable is a fresh state (a budget is not worth a
        daemon that cannot start)."""
        try:
            sent, tickets, halvings, slowed_until = json.loads(data)
            return cls(
                sorted(float(t) for t in sent),
                sorted((Ticket(float(at), str(holder)) for at, holder in tickets), key=lambda t: t.at),
                max(0, int(halvings)),
                float(slowed_until),
            )
        except (ValueError, TypeError):
            return cls()


@dataclass(frozen=True, slots=True)
class Admission:
    """``at`` None: send now (the send is recorded); ``sends``: send at ``at``, a moment away (the send
    is recorded then: wait for it); else not before ``at`` (a ticket, or the moment the window frees for
    a ticket's holder)."""

    at: float | None
    sends: bool = False


class Budget:
    """One destination's budget under ``rate``; the clock is passed in. Processes sharing the budget pass
    their own clocks, which may be a little apart (hosts sharing a database): a send is never recorded
    before the last one recorded, so the sends stay in time order whoever records them."""

    def __init__(self, rate: Rate, state: BudgetState | None = None, max_tickets: int = MAX_TICKETS) -> None:
        self.rate = rate
        self.state = state if state is not None else BudgetState()
        self.max_tickets = max_tickets

    def limit(self, now: float) -> int:
        """Messages per period now: the configured count, halved per slow-down in force, at least 1."""
        if self.state.halvings and now >= self.state.slowed_until:
            self.state.halvings = 0
        return max(1, self.rate.messages >> self.state.halvings)

    def admit(self, now: float, holder: str) -> Admission:
        """May message ``holder`` be sent now? Records the send (or the ticket) it answers."""
        self._lapse(now)
        sent, tickets, n = self.state.sent, self.state.tickets, self.limit(now)
        mine = next((i for i, t in enumerate(tickets) if t.holder == holder), None)
        if mine is not None:
            at = self._fits(now, n)
            if at - now > WAIT_AT_TURN:
                return Admission(at)
            del tickets[mine]
            sent.append(at)
            return Admission(None) if at == now else Admission(at, sends=True)
        waiting = bisect.bisect_right([t.at for t in tickets], now)
        if waiting == len(tickets) and len(sent) + waiting < n:  # room: sent now, recorded in order
            sent.append(max(now, sent[-1]) if sent else now)
            return Admission(None)
        if len(tickets) >= self.max_tickets:  # no ticket: back after the last one, to ask again
            return Admission(max(now, tickets[-1].at) + self.rate.per)
        taken = sorted([*sent, *(t.at for t in tickets)])
        at = max(now, taken[-1], taken[-n] + self.rate.per if len(taken) >= n else now)
        tickets.append(Ticket(at, holder))
        return Admission(at)

    def turn(self, holder: str) -> float | None:
        """The time of message ``holder``'s ticket, if it holds one."""
        return next((t.at for t in self.state.tickets if t.holder == holder), None)

    def take(self, now: float) -> float | None:
        """A send now if the window has room (None, the send recorded), else the moment it frees: no
        ticket is given (a relay's budget, passed over for the next relay rather than waited for)."""
        self._lapse(now)
        sent, n = self.state.sent, self.limit(now)
        if len(sent) < n:
            sent.append(max(now, sent[-1]) if sent else now)
            return None
        return sent[-n] + self.rate.per

    def slow_down(self, now: float) -> bool:
        """A slow-down reply: halve the rate (again) for ``SLOW_DOWN_FOR``; True if the limit changed."""
        before = self.limit(now)
        self.state.slowed_until = now + SLOW_DOWN_FOR
        if before > 1:
            self.state.halvings += 1
        return self.limit(now) != before

    def _fits(self, now: float, n: int) -> float:
        """The earliest time from ``now`` a send fits the window of ``n``, after every send recorded (one
        admitted for a moment still to come included), so that the sends stay in time order."""
        sent = self.state.sent  # _lapse left only the sends of the window (now - per, now], and later
        at = max(now, sent[-1]) if sent else now
        return max(at, sent[-n] + self.rate.per) if len(sent) >= n else at

    def _lapse(self, now: float) -> None:
        """Forget sends out of the window, and tickets whose messages did not come back for them."""
        sent, tickets = self.state.sent, self.state.tickets
        per = self.rate.per  # a send is out of the window once send + per <= now, computed so, as the
        # times admit answers are (now - per would round differently)
        del sent[: bisect.bisect_right(sent, now, key=lambda t: t + per)]
        while tickets and tickets[0].at + per + LATE <= now:
            del tickets[0]
