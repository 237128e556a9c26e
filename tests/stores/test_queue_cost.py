"""A large deferred queue costs the spooler nothing per wake-up, per submit and per delivery (#17): every
statement the store runs for them does as much work with 40x more deferred messages queued.

Each statement is costed as it really runs: SQLite's virtual machine steps (a progress handler on the
store's own connections, charged to the statement the trace callback named last); PostgreSQL's rows
visited (EXPLAIN ANALYZE of each logged statement afterwards, in a transaction rolled back: actual rows
of every plan node plus the rows its filters removed). A statement that walks the submission-order
index from the oldest entry costs 40x here, one that reads the due index the same.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import asyncpg
import pytest

from spoolerd.message import Draft, FolderRole, NewRecipient, RecipientState, RecipientUpdate
from spoolerd.store import MessageStore
from spoolerd.testing import FakeClock, StoreFactory
from stores.sqlite import core as sqlite_core
from stores.sqlite.engine import connect as sqlite_connect

SMALL, LARGE = 100, 4000
OWNER = "spooler"
CONTENT = b"From: me@localhost\r\nSubject: cost\r\n\r\nhello\r\n"


class Costs:
    """Statement (its text, values stripped) -> the largest cost seen for it in this phase."""

    def __init__(self) -> None:
        self.phase: dict[str, int] = {}
        self.pending: list[tuple[str, tuple[Any, ...]]] = []  # PostgreSQL's, explained afterwards

    def charge(self, statement: str, cost: int, phase: dict[str, int] | None = None) -> None:
        """Charge ``statement`` to the phase it began in (this one unless said)."""
        phase = self.phase if phase is None else phase
        key = _shape(statement)
        phase[key] = max(phase.get(key, 0), cost)


def _shape(statement: str) -> str:
    return re.sub(r"'[^']*'|\b\d+(\.\d+)?(e[+-]?\d+)?\b", "?", " ".join(statement.split()))


@contextmanager
def sqlite_costs(monkeypatch: pytest.MonkeyPatch, costs: Costs) -> Iterator[None]:
    def costed(path: str, **kwargs: Any) -> sqlite3.Connection:
        conn = sqlite_connect(path, **kwargs)
        current: list[Any] = [None, 0, None]  # the statement running, its steps so far, its phase

        def trace(statement: str) -> None:
            if current[0] is not None:
                costs.charge(current[0], current[1], current[2])
            current[:] = [statement, 0, costs.phase]

        def step() -> int:
            current[1] += 1
            return 0

        conn.set_trace_callback(trace)
        conn.set_progress_handler(step, 10)
        return conn

    monkeypatch.setattr(sqlite_core, "connect", costed)  # the name the store calls
    yield


@contextmanager
def postgres_costs(monkeypatch: pytest.MonkeyPatch, costs: Costs) -> Iterator[None]:
    create_pool = asyncpg.create_pool

    def logged(*args: Any, **kwargs: Any) -> Any:
        async def init(conn: Any) -> None:
            conn.add_query_logger(lambda record: costs.pending.append((record.query, tuple(record.args))))

        return create_pool(*args, init=init, **kwargs)

    monkeypatch.setattr(asyncpg, "create_pool", logged)  # as the store's pool is made
    yield


def _rows_visited(node: dict[str, Any]) -> int:
    own = node.get("Actual Rows", 0) * node.get("Actual Loops", 1) + node.get("Rows Removed by Filter", 0)
    return int(own) + sum(_rows_visited(child) for child in node.get("Plans", []))


async def explain_pending(options: dict[str, Any], costs: Costs) -> None:
    conn = await asyncpg.connect(
        options["dsn"], timeout=10, server_settings={"search_path": options["schema_name"]}
    )
    try:
        for query, args in costs.pending:
            plain = query.strip().rstrip(";")
            if ";" in plain or not plain.upper().startswith(("SELECT", "UPDATE", "DELETE", "WITH")):
                continue  # a script (the schema's), or an insert: by key, and it would collide
            tx = conn.transaction()
            await tx.start()
            try:
                plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", *args)
            finally:
                await tx.rollback()
            costs.charge(query, _rows_visited(json.loads(plan)[0]["Plan"]))
    finally:
        await conn.close()
    costs.pending.clear()


async def spooler_round(store: MessageStore, clock: FakeClock) -> None:
    """What the spooler asks of a store for one message: its submit, the wake-ups it causes, a
    deferral and, once it is due again, its delivery."""
    outbox = await store.folder(FolderRole.OUTBOX)
    mid = await store.submit_new(outbox.id, Draft(CONTENT, [NewRecipient("a@remote.test")]))
    for deliver in (False, True):
        assert await store.next_due() is not None
        due = [e.id async for e in store.outgoing_queue(due_at=clock(), include_locked=False)]
        assert due == [mid]  # the deferred messages are not due
        await store.lock(mid, OWNER, 300)
        assert await store.next_due() is not None
        if not deliver:
            deferral = RecipientUpdate(0, RecipientState.DEFERRED, "t", 451, "4.3.0", "later", clock() + 60)
            await store.record_outcomes(mid, OWNER, [deferral])
            await store.unlock(mid, OWNER, retry_at=clock() + 60)
            clock.advance(61)
        else:
            await store.finish(mid, OWNER, outcomes=[RecipientUpdate(0, RecipientState.DELIVERED, "t")])


async def test_a_large_deferred_queue_costs_nothing_per_message(
    store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    costs = Costs()
    hooks = sqlite_costs if store_factory.provider == "sqlite" else postgres_costs
    fill = cast(Any, store_factory.backend).fill_deferred  # the test backends' own, not the protocol's
    with hooks(monkeypatch, costs):
        store = await store_factory.open()
        clock = store_factory.clock
        phases: dict[int, dict[str, int]] = {}
        filled = 0
        for size in (SMALL, LARGE):
            costs.phase = {}  # filling: not counted
            outbox = await store.folder(FolderRole.OUTBOX)
            await store.submit_new(outbox.id, Draft(CONTENT, [NewRecipient("b@remote.test")]))
            await fill(store_factory.options, size - filled, clock() + 86400)
            filled = size
            async for entry in store.outgoing_queue(due_at=clock(), include_locked=False):
                await store.abort_submit(entry.id)  # the fill's template: not due any more
            costs.phase, costs.pending = {}, []
            await spooler_round(store, clock)
            if costs.pending:
                await explain_pending(store_factory.options, costs)
            phases[size] = costs.phase
    grown = {
        statement: (phases[SMALL][statement], cost)
        for statement, cost in phases[LARGE].items()
        if statement in phases[SMALL] and cost > 2 * phases[SMALL][statement] + 20
    }
    assert len(phases[LARGE]) > 5  # the statements were seen
    assert grown == {}, f"cost grew with the deferred queue ({SMALL} -> {LARGE}): {grown}"
