"""The PostgreSQL store's event outbox (``spoolerd.outbox``): webhook events written with the outcomes
they tell of, read in order by one sender per webhook under a lease, deleted once sent. A claim locks the
webhook's lease row first, so daemons claiming at once take turns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from spoolerd.outbox import OutboxClaim, OutboxEvent, PendingEvent

from .core import PostgresCore

__all__ = ["PostgresOutbox", "write_events"]


async def write_events(conn: Any, events: Sequence[OutboxEvent], now: float) -> None:
    """Inside the transaction that records the outcomes the events tell of."""
    if events:
        await conn.executemany(
            "INSERT INTO outbox (webhook, message_id, payload, created_at) VALUES ($1, $2, $3, $4)",
            [(e.webhook, e.message_id, e.payload, now) for e in events],
        )


async def _trim(conn: Any, webhook: str, keep: int) -> int:
    cut = await conn.fetchval(
        "SELECT seq FROM outbox WHERE webhook=$1 ORDER BY seq DESC LIMIT 1 OFFSET $2", webhook, keep
    )
    if cut is None:
        return 0
    status = await conn.execute("DELETE FROM outbox WHERE webhook=$1 AND seq<=$2", webhook, cut)
    return int(status.split()[-1])


_ANYTHING = (  # events to send, or a holder to release
    "SELECT EXISTS (SELECT 1 FROM outbox WHERE webhook=$1)"
    " OR EXISTS (SELECT 1 FROM outbox_senders WHERE webhook=$1 AND owner <> '')"
)


class PostgresOutbox(PostgresCore):
    async def outbox_claim(
        self, webhook: str, *, owner: str, lease: float, limit: int, keep: int
    ) -> OutboxClaim:
        now = self._clock()
        # a sender woken by another process's commit that wrote no events: one read, no transaction (the
        # claim's row lock would write and flush one); events written after it wake a sender again
        if not (await self._database().run_one(_ANYTHING, webhook, writes=False))[0]:
            return OutboxClaim()

        async def tx(conn: Any) -> OutboxClaim:
            await conn.execute(
                "INSERT INTO outbox_senders (webhook, owner, expiry) VALUES ($1, '', 0)"
                " ON CONFLICT (webhook) DO NOTHING",
                webhook,
            )
            held = await conn.fetchrow(
                "SELECT owner, expiry FROM outbox_senders WHERE webhook=$1 FOR UPDATE", webhook
            )
            dropped = await _trim(conn, webhook, keep)
            backlog = await conn.fetchval("SELECT COUNT(*) FROM outbox WHERE webhook=$1", webhook)
            if limit <= 0:
                return OutboxClaim(dropped=dropped, backlog=backlog)
            if held["owner"] not in ("", owner) and held["expiry"] > now:
                return OutboxClaim(held_until=held["expiry"], dropped=dropped, backlog=backlog)
            rows = await conn.fetch(
                "SELECT seq, message_id, payload, created_at FROM outbox WHERE webhook=$1"
                " ORDER BY seq LIMIT $2",
                webhook,
                limit,
            )
            await conn.execute(
                "UPDATE outbox_senders SET owner=$2, expiry=$3 WHERE webhook=$1",
                webhook,
                owner if rows else "",
                now + lease if rows else 0.0,
            )
            events = [
                PendingEvent(r["seq"], r["message_id"], bytes(r["payload"]), r["created_at"]) for r in rows
            ]
            return OutboxClaim(events, None, dropped, backlog)

        return await self._database().run(tx)

    async def outbox_ack(self, webhook: str, seqs: Sequence[int], *, owner: str, lease: float) -> None:
        now = self._clock()

        async def tx(conn: Any) -> None:
            await conn.execute(
                "DELETE FROM outbox WHERE webhook=$1 AND seq = ANY($2::bigint[])", webhook, list(seqs)
            )
            await conn.execute(
                "UPDATE outbox_senders SET expiry=$3 WHERE webhook=$1 AND owner=$2",
                webhook,
                owner,
                now + lease,
            )

        await self._database().run(tx)

    async def outbox_release(self, webhook: str, owner: str) -> None:
        async def tx(conn: Any) -> None:
            await conn.execute(
                "UPDATE outbox_senders SET owner='', expiry=0 WHERE webhook=$1 AND owner=$2", webhook, owner
            )

        await self._database().run(tx)
