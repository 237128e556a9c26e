"""The PostgreSQL store's leases: a spooler locks a queued message for a while (never waiting for a
daemon that is deciding about the same row), renews, unlocks (with a retry time) and, after a restart,
takes back what its previous life held."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from spoolerd.errors import NoAccess
from spoolerd.events import QueueChanged
from spoolerd.message import Message, check_time, check_wire_text
from stores.common.rules import STATE_COLUMNS, MessageState, check_claim, int_id

from . import rows
from .core import PostgresCore
from .db import affected

__all__ = ["PostgresLeases"]


# The due head's first ``$4`` rows, unlocked ones from the due index and those whose lease is over from
# the lock index, each row passed over while another daemon is claiming it (SKIP LOCKED), leased to $1.
_CLAIM = (
    "WITH free AS (SELECT id, due_at FROM messages WHERE lock_owner IS NULL AND queued AND NOT held"
    "  AND due_at <= $3 ORDER BY due_at, id LIMIT $4 FOR UPDATE SKIP LOCKED),"
    " stale AS (SELECT id, due_at FROM messages WHERE lock_owner IS NOT NULL AND lock_expiry <= $3"
    "  AND queued AND NOT held AND due_at <= $3 ORDER BY due_at, id LIMIT $4 FOR UPDATE SKIP LOCKED),"
    " picked AS (SELECT id, due_at FROM (SELECT * FROM free UNION ALL SELECT * FROM stale) AS due"
    "  ORDER BY due_at, id LIMIT $4)"
    " UPDATE messages m SET lock_owner=$1, lock_expiry=$2 FROM picked WHERE m.id = picked.id"
    " RETURNING m.id, picked.due_at"
)


class PostgresLeases(PostgresCore):
    async def claim(self, owner: str, lease: float, limit: int) -> list[Message]:
        if not check_claim(owner, lease, limit):
            return []
        now = self._clock()

        async def tx(conn: Any) -> list[Message]:
            taken = sorted(
                (r["due_at"], r["id"]) for r in await conn.fetch(_CLAIM, owner, now + lease, now, limit)
            )
            if not taken:
                return []
            loaded = await rows.load_messages(conn, [mid for _, mid in taken], now)
            return [replace(loaded[mid], writable=False) for _, mid in taken]

        return await self._database().run(tx)

    async def lock(self, message_id: str, owner: str, lease: float) -> Message:
        mid = int_id(message_id)
        check_time("lease", lease)
        check_wire_text("lock owner", owner, allow_empty=False)
        now = self._clock()

        async def tx(conn: Any) -> Message:
            # SKIP LOCKED: a row another daemon is deciding about right now is theirs; never wait for it
            row = await conn.fetchrow(
                f"SELECT {STATE_COLUMNS} FROM messages WHERE id=$1 FOR UPDATE SKIP LOCKED", mid
            )
            if row is None:
                await rows.state_row(conn, mid, for_update=False)  # NotFound if there is no such message
                raise NoAccess(f"message {message_id} is being locked by another spooler")
            MessageState.of(row).check_lockable(message_id, owner, now)
            await conn.execute(
                "UPDATE messages SET lock_owner=$1, lock_expiry=$2 WHERE id=$3", owner, now + lease, mid
            )
            return replace(await rows.load_message(conn, mid, now), writable=False)

        return await self._database().run(tx)

    async def renew(self, message_id: str, owner: str, lease: float) -> None:
        mid = int_id(message_id)
        check_time("lease", lease)
        now = self._clock()

        async def tx(conn: Any) -> None:
            await rows.require_lock(conn, mid, owner)
            await conn.execute("UPDATE messages SET lock_expiry=$1 WHERE id=$2", now + lease, mid)

        await self._database().run(tx)

    async def unlock(self, message_id: str, owner: str, *, retry_at: float | None = None) -> None:
        mid = int_id(message_id)
        check_time("retry_at", retry_at)

        async def tx(conn: Any) -> None:
            await rows.require_lock(conn, mid, owner)
            if retry_at is None:
                await conn.execute("UPDATE messages SET lock_owner=NULL, lock_expiry=NULL WHERE id=$1", mid)
            else:
                await conn.execute(
                    "UPDATE messages SET lock_owner=NULL, lock_expiry=NULL, next_attempt=$1,"
                    " due_at=GREATEST($1, COALESCE(not_before, $1)) WHERE id=$2",
                    retry_at,
                    mid,
                )

        await self._changed(tx, "unlock" if retry_at is None else "retry", message_id)

    async def postpone(self, message_ids: Sequence[str], until: float) -> int:
        check_time("until", until)
        ids = [int_id(m) for m in message_ids]

        async def tx(conn: Any) -> int:
            return affected(
                await conn.execute(
                    "UPDATE messages SET next_attempt=$1, due_at=GREATEST($1, COALESCE(not_before, $1))"
                    " WHERE id = ANY($2::bigint[]) AND queued AND lock_owner IS NULL AND NOT held"
                    " AND due_at < $1",
                    until,
                    ids,
                )
            )

        return await self._database().run(tx)

    async def reclaim(self, owner: str) -> int:
        check_wire_text("lock owner", owner, allow_empty=False)

        async def tx(conn: Any) -> int:
            return affected(
                await conn.execute(
                    "UPDATE messages SET lock_owner=NULL, lock_expiry=NULL WHERE queued"
                    " AND (lock_owner=$1 OR starts_with(lock_owner, $2))",
                    owner,
                    owner + "#",
                )
            )

        count: int = await self._database().run(tx, notify=True)
        if count:
            self._hub.publish(QueueChanged(self.name, "reclaim", None))
        return count
