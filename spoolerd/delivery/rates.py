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
``RATES``), whatever store a message comes from; without one (an engine built for a test) they are kept
in memory only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from .. import maillog
from ..message import StateChange
from ..rate import SLOW_DOWN_CODES, Budget, BudgetState, Rate
from ..slot import TransportSlot
from ..store import Clock, MessageStore
from ..transport import Outcome, OutcomeKind

__all__ = ["RATES", "RateBudgets", "TransportGate"]

RATES = "(spooler rates)"  # the spooler's memory in the default store: each rated destination's budget


class RateBudgets:
    """The budget of every rated destination, by destination key (``transport:destination``)."""

    def __init__(self, store: MessageStore | None, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._budgets: dict[str, Budget] = {}
        self._locks: dict[str, asyncio.Lock] = {}  # one admission at a time per key: its write in order

    async def admit(
        self, slot: TransportSlot, destination: str, key: str, message_id: str, count: int
    ) -> list[Outcome] | None:
        """None: send message ``message_id`` now (recorded durably first); else a deferral for each of
        its ``count`` recipients until its turn, without an attempt."""
        rate = slot.rate
        if rate is None:
            return None
        async with self._locks.setdefault(key, asyncio.Lock()):
            budget = await self._budget(key, rate)
            now = self.clock()
            admission = budget.admit(now, message_id)
            await self._save(key, budget)
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
            OutcomeKind.DEFERRED, None, "4.7.0", diagnostic, admission.at - now, attempted=False
        )
        return [outcome] * count

    async def observe(
        self, slot: TransportSlot, destination: str, key: str, answers: Sequence[Outcome]
    ) -> None:
        """A slow-down reply among ``answers`` halves the destination's rate (once per send)."""
        rate = slot.rate
        if rate is None or not any(o.code in SLOW_DOWN_CODES for o in answers):
            return
        async with self._locks.setdefault(key, asyncio.Lock()):
            budget = await self._budget(key, rate)
            now = self.clock()
            if budget.slow_down(now):
                until = budget.state.slowed_until
                limit = str(Rate(budget.limit(now), rate.per))
                maillog.rate_changed(transport=slot.name, relay=destination, rate=limit, until=until)
            slot.slowed[destination] = (budget.limit(now), budget.state.slowed_until)
            await self._save(key, budget)

    async def turn(self, key: str, rate: Rate, message_id: str) -> tuple[Rate, float] | None:
        """The rate limit now under ``key`` and the time of message ``message_id``'s turn, if it waits
        for one (what ``spoolerctl queue`` says): no send recorded, no ticket given."""
        async with self._locks.setdefault(key, asyncio.Lock()):
            budget = await self._budget(key, rate)
        at = budget.turn(message_id)
        return None if at is None else (Rate(budget.limit(self.clock()), rate.per), at)

    def gate(self, transport: str) -> TransportGate:
        """The ``RateGate`` handed to transport ``transport`` (``RateGated``)."""
        return TransportGate(self, transport)

    async def take(self, key: str, rate: Rate) -> float | None:
        """One send under ``key``'s budget now (None; recorded in the store first), else when it frees."""
        async with self._locks.setdefault(key, asyncio.Lock()):
            budget = await self._budget(key, rate)
            frees = budget.take(self.clock())
            if frees is None:
                await self._save(key, budget)
        return frees

    async def _budget(self, key: str, rate: Rate) -> Budget:
        budget = self._budgets.get(key)
        if budget is None:
            state = None
            if self.store is not None:
                found = (await self.store.transport_state(RATES, key)).get(key)
                state = None if found is None else BudgetState.decode(found)
            budget = self._budgets[key] = Budget(rate, state)
        budget.rate = rate  # a reload may have changed it
        return budget

    async def _save(self, key: str, budget: Budget) -> None:
        if self.store is not None:
            await self.store.set_transport_state(StateChange(RATES, {key: budget.state.encode()}))


@dataclass(frozen=True, slots=True)
class TransportGate:
    """One transport's ``RateGate``: its keys are its own, kept apart from every other budget's."""

    budgets: RateBudgets
    transport: str

    async def admit(self, key: str, rate: Rate) -> float | None:
        return await self.budgets.take(f"{self.transport}:relay {key}", rate)
