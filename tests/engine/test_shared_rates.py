"""Rate budgets shared between processes (spoolerd/delivery/rates.py over a ``SharedState`` store): two
budgets keepers on one SQLite file, as a daemon and its delivery worker are, spend one budget, and
admissions that race each other are taken in the order they change it (a time read before the store's
transaction would make a later one look earlier than the last send recorded, and defer it for nothing)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from spoolerd.delivery.rates import RATES, RateBudgets
from spoolerd.plugins import PluginRegistry
from spoolerd.rate import BudgetState, Rate
from spoolerd.slot import TransportSlot
from spoolerd.store import MessageStore, StoreContext


async def two_stores(tmp_path: Path) -> tuple[MessageStore, MessageStore]:
    stores = [
        PluginRegistry().open_store("sqlite", {"path": str(tmp_path / "q.db")}, StoreContext("q", tmp_path))
        for _ in range(2)
    ]
    for store in stores:
        await store.start()
    return stores[0], stores[1]


def slot(rate: Rate) -> TransportSlot:
    return cast(TransportSlot, SimpleNamespace(name="relay", rate=rate, slowed={}))


async def admit_all(budgets: list[RateBudgets], rate: Rate, each: int) -> list[Any]:
    relay = slot(rate)
    return await asyncio.gather(
        *(
            b.admit(relay, "mx.example", "relay:mx.example", f"m{k}.{i}", 1)
            for i in range(each)
            for k, b in enumerate(budgets)
        )
    )


async def test_racing_admissions_under_the_rate_all_send(tmp_path: Path) -> None:
    a, b = await two_stores(tmp_path)
    try:
        budgets = [RateBudgets(a, time.time), RateBudgets(b, time.time)]
        answers = await admit_all(budgets, Rate(1000, 60.0), 150)
        assert answers.count(None) == 300  # none told to wait: the budget had room for every one
        state = BudgetState.decode((await a.transport_state(RATES))["relay:mx.example"])
        assert len(state.sent) == 300 and state.tickets == []
    finally:
        await a.stop()
        await b.stop()


async def test_racing_admissions_over_the_rate_send_only_the_rate(tmp_path: Path) -> None:
    a, b = await two_stores(tmp_path)
    try:
        budgets = [RateBudgets(a, time.time), RateBudgets(b, time.time)]
        answers = await admit_all(budgets, Rate(50, 60.0), 60)
        assert answers.count(None) == 50  # one budget for both: 50, not 50 each
        waiting = [outcomes for outcomes in answers if outcomes is not None]
        assert len(waiting) == 70 and all("waits its turn" in o[0].diagnostic for o in waiting)
        state = BudgetState.decode((await b.transport_state(RATES))["relay:mx.example"])
        assert len(state.sent) == 50 and len(state.tickets) == 70
    finally:
        await a.stop()
        await b.stop()
