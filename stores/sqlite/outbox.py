"""The SQLite store's event outbox (``spoolerd.outbox``): webhook events written with the outcomes they
tell of, read in order by one sender per webhook under a lease, deleted once sent."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from spoolerd.outbox import OutboxClaim, OutboxEvent, PendingEvent

from .core import SqliteCore

__all__ = ["SqliteOutbox", "write_events"]


def write_events(conn: sqlite3.Connection, events: Sequence[OutboxEvent], now: float) -> None:
    """Inside the transaction that records the outcomes the events tell of."""
    conn.executemany(
        "INSERT INTO outbox (webhook, message_id, payload, created_at) VALUES (?, ?, ?, ?)",
        [(e.webhook, e.message_id, e.payload, now) for e in events],
    )


def _trim(conn: sqlite3.Connection, webhook: str, keep: int) -> int:
    cut = conn.execute(
        "SELECT seq FROM outbox WHERE webhook=? ORDER BY seq DESC LIMIT 1 OFFSET ?", (webhook, keep)
    ).fetchone()
    if cut is None:
        return 0
    return conn.execute("DELETE FROM outbox WHERE webhook=? AND seq<=?", (webhook, cut[0])).rowcount


def _renew(conn: sqlite3.Connection, webhook: str, owner: str, expiry: float) -> None:
    conn.execute(
        "INSERT INTO outbox_senders (webhook, owner, expiry) VALUES (?, ?, ?)"
        " ON CONFLICT (webhook) DO UPDATE SET owner=excluded.owner, expiry=excluded.expiry",
        (webhook, owner, expiry),
    )


_ANYTHING = (  # events to send, or a holder to release
    "SELECT EXISTS (SELECT 1 FROM outbox WHERE webhook=?)"
    " OR EXISTS (SELECT 1 FROM outbox_senders WHERE webhook=? AND owner <> '')"
)


class SqliteOutbox(SqliteCore):
    async def outbox_claim(
        self, webhook: str, *, owner: str, lease: float, limit: int, keep: int
    ) -> OutboxClaim:
        now = self._clock()
        # a sender woken by another process's commit that wrote no events: one read on a reader, not a
        # transaction under the write lock; events written after it wake a sender again
        if not await self._readers.run(
            lambda conn: bool(conn.execute(_ANYTHING, (webhook, webhook)).fetchone()[0])
        ):
            return OutboxClaim()

        def tx(conn: sqlite3.Connection) -> OutboxClaim:
            dropped = _trim(conn, webhook, keep)
            (backlog,) = conn.execute("SELECT COUNT(*) FROM outbox WHERE webhook=?", (webhook,)).fetchone()
            if limit <= 0:
                return OutboxClaim(dropped=dropped, backlog=backlog)
            held = conn.execute(
                "SELECT owner, expiry FROM outbox_senders WHERE webhook=?", (webhook,)
            ).fetchone()
            if held is not None and held["owner"] not in ("", owner) and held["expiry"] > now:
                return OutboxClaim(held_until=held["expiry"], dropped=dropped, backlog=backlog)
            rows = conn.execute(
                "SELECT seq, message_id, payload, created_at FROM outbox WHERE webhook=?"
                " ORDER BY seq LIMIT ?",
                (webhook, limit),
            ).fetchall()
            _renew(conn, webhook, owner if rows else "", now + lease if rows else 0.0)
            events = [
                PendingEvent(r["seq"], r["message_id"], bytes(r["payload"]), r["created_at"]) for r in rows
            ]
            return OutboxClaim(events, None, dropped, backlog)

        return await self._writer.run(tx)

    async def outbox_ack(self, webhook: str, seqs: Sequence[int], *, owner: str, lease: float) -> None:
        now = self._clock()

        def tx(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM outbox WHERE webhook=? AND seq=?", [(webhook, s) for s in seqs])
            conn.execute(
                "UPDATE outbox_senders SET expiry=? WHERE webhook=? AND owner=?",
                (now + lease, webhook, owner),
            )

        await self._writer.run(tx)

    async def outbox_release(self, webhook: str, owner: str) -> None:
        await self._writer.run(
            lambda conn: conn.execute(
                "UPDATE outbox_senders SET owner='', expiry=0 WHERE webhook=? AND owner=?", (webhook, owner)
            )
        )
