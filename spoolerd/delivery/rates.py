"""Rate limits per destination (``rate`` on ``[transports.NAME]``): the budgets of ``spoolerd.rate`` kept
in a store, so that a restarted daemon goes on where the last one stopped.

A send is admitted only once the budget that admits it is written to the store (one small write per
send to a rated destination; none for a transport without ``rate``). A message that does not fit is
deferred without an attempt until its ticket's time (the spooler sleeps until then like for any retry
time): it holds no delivery slot and counts as no failure. Back at its turn, it may wait in its attempt,
its slots held, for the window to free (``WAIT_AT_TURN`` at most: a send before it that went a little
late), rather than be deferred once more. A slow-down reply (421, 451, 454) halves the
destination's rate (``spoolerd.rate``), logged once per change and shown in the transport's status row.

A transport with budgets of its own (the smtp transport's ``relay_rates``) is given a ``RateGate``
(``RateBudgets.gate``, spoolerd/abilities.py): the same budgets, under ``transport:relay KEY``, that
answer without a ticket (``Budget.take``): a relay whose window is full is passed over, not waited for.

The budgets live in one store, the daemon's default store (the spooler's own memory there, under
``RATES``), whatever store a message comes from, each read, changed and written back in one transaction
(``SharedState``) so that every process delivering from the store spends the same budget; without one
(an engine built for a test) they are kept in memory only.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from .. import maillog
from ..message import StateChange
from ..rate import SLOW_DOWN_CODES, Budget, BudgetState, Rate
from ..shared_state import SharedState
from ..slot import TransportSlot
from ..store import Clock, MessageStore
from ..transport import Outcome, OutcomeKind

__all__ = ["RATES", "TURN_FRESH", "RateBudgets", "TransportGate"]

T = TypeVar("T")

TURN_FRESH = 1.0  # seconds a shared budget read for the turns of a queue listing is used again
RATES = "(spooler rates)"  # the spooler's memory in the default store: each rated destination's budget


class RateBudgets:
    """The budget of every rated destination, by destination key (``transport:destination``).

    In a store that is ``SharedState`` (those of this repository) each budget is read, changed and
    written back in one transaction, so the daemon, its delivery workers and other daemons on the same
    store spend one budget; in another (or with none, an engine built for a test) this process keeps
    its own, written through for a restart."""

    def __init__(self, store: MessageStore | None, clock: Clock) -> None:
        self.store = store
        self.shared = store if isinstance(store, SharedState) else None
        self.clock = clock
        self._budgets: dict[str, Budget] = {}
        self._locks: dict[str, asyncio.Lock] = {}  # one admission at a time per key: its write in order
        self._turns: dict[str, tuple[float, BudgetState | None]] = {}  # a shared budget, read for turns

    async def admit(
        self, slot: TransportSlot, destination: str, key: str, message_id: str, count: int
    ) -> list[Outcome] | None:
        """None: send message ``message_id`` now (recorded durably first); else a deferral for each of
        its ``count`` recipients until its turn, without an attempt."""
        rate = slot.rate
        if rate is None:
            return None
        admission, budget, now = await self._update(key, rate, lambda b, now: b.admit(now, message_id))
        limit = budget.limit(now)  # and a halving that is over ends here
        if budget.state.halvings:  # slowed: shown in the status row (after a restart too)
            slot.slowed[destination] = (limit, budget.state.slowed_until)
        elif slot.slowed.pop(destination, None) is not None:
            maillog.rate_changed(transport=slot.name, relay=destination, rate=str(rate), until=None)
        if admission.at is None:
            return None
        if admission.sends:  # its turn, the window full for a moment more: waited for here, not deferred
            await asyncio.sleep(admission.at - self.clock())
            return None
        diagnostic = f"rate limit {Rate(limit, rate.per)} to {destination}: waits its turn"
        outcome = Outcome(
            OutcomeKind.DEFERRED,
            None,
            "4.7.0",
            diagnostic,
            max(0.0, admission.at - self.clock()),
            attempted=False,
        )
        return [outcome] * count

    async def observe(
        self, slot: TransportSlot, destination: str, key: str, answers: Sequence[Outcome]
    ) -> None:
        """A slow-down reply among ``answers`` halves the destination's rate (once per send)."""
        rate = slot.rate
        if rate is None or not any(o.code in SLOW_DOWN_CODES for o in answers):
            return
        slowed, budget, now = await self._update(key, rate, lambda b, now: b.slow_down(now))
        if slowed:
            until = budget.state.slowed_until
            limit = str(Rate(budget.limit(now), rate.per))
            maillog.rate_changed(transport=slot.name, relay=destination, rate=limit, until=until)
        slot.slowed[destination] = (budget.limit(now), budget.state.slowed_until)

    async def turn(self, key: str, rate: Rate, message_id: str) -> tuple[Rate, float] | None:
        """The rate limit now under ``key`` and the time of message ``message_id``'s turn, if it waits
        for one (what ``spoolerctl queue`` says): no send recorded, no ticket given."""
        budget = self._budgets.get(key) if self.shared is None else None
        if budget is None:
            budget = Budget(rate, await self._recent(key))
        at = budget.turn(message_id)
        return None if at is None else (Rate(budget.limit(self.clock()), rate.per), at)

    def gate(self, transport: str) -> TransportGate:
        """The ``RateGate`` handed to transport ``transport`` (``RateGated``)."""
        return TransportGate(self, transport)

    async def take(self, key: str, rate: Rate) -> float | None:
        """One send under ``key``'s budget now (None; recorded in the store first), else when it frees."""
        frees, _, _ = await self._update(key, rate, lambda b, now: b.take(now), changed=lambda f: f is None)
        return frees

    async def _update(
        self,
        key: str,
        rate: Rate,
        step: Callable[[Budget, float], T],
        changed: Callable[[T], bool] = lambda _: True,
    ) -> tuple[T, Budget, float]:
        """``step`` on ``key``'s budget at the time it runs, then the budget written back (durably) when
        ``changed`` by it; its answer, the budget after it and that time. One step at a time per key in
        this process (one store connection waits per key, not one per attempt); shared, the time is
        read inside the store's transaction, so steps of several processes on one host take their times
        in the order they change the budget (hosts whose clocks are apart: ``Budget`` records each send
        after the last one all the same)."""
        async with self._locks.setdefault(key, asyncio.Lock()):
            shared = self.shared
            if shared is not None:

                def change(value: bytes | None) -> tuple[bytes | None, tuple[T, Budget, float]]:
                    budget = Budget(rate, None if value is None else BudgetState.decode(value))
                    now = self.clock()  # read here: the steps of racing processes in the budget's order
                    answer = step(budget, now)
                    return (budget.state.encode() if changed(answer) else None), (answer, budget, now)

                return await shared.update_transport_state(RATES, key, change)
            budget = self._budgets.get(key)
            if budget is None:
                budget = self._budgets[key] = Budget(rate, await self._stored(key))
            budget.rate = rate  # a reload may have changed it
            now = self.clock()
            answer = step(budget, now)
            if changed(answer) and self.store is not None:
                await self.store.set_transport_state(StateChange(RATES, {key: budget.state.encode()}))
        return answer, budget, now

    async def _stored(self, key: str) -> BudgetState | None:
        if self.store is None:
            return None
        found = (await self.store.transport_state(RATES, key)).get(key)
        return None if found is None else BudgetState.decode(found)

    async def _recent(self, key: str) -> BudgetState | None:
        """The budget as stored, read again at most once a ``TURN_FRESH`` for the turns a queue listing
        asks of it (one read and decode per destination, not per recipient listed)."""
        now = self.clock()
        seen = self._turns.get(key)
        if seen is None or not 0 <= now - seen[0] < TURN_FRESH:  # a clock set back reads it again too
            seen = self._turns[key] = (now, await self._stored(key))
        return None if seen[1] is None else dataclasses.replace(seen[1])  # turn() may end a halving


@dataclass(frozen=True, slots=True)
class TransportGate:
    """One transport's ``RateGate``: its keys are its own, kept apart from every other budget's."""

    budgets: RateBudgets
    transport: str

    async def admit(self, key: str, rate: Rate) -> float | None:
        return await self.budgets.take(f"{self.transport}:relay {key}", rate)
