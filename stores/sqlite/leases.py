"""The SQLite store's leases: the spooler locks a queued message for a while, renews, unlocks (with a
retry time) and, after a restart, takes back what its previous life held."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import replace

from spoolerd.errors import NotFound, StoreError
from spoolerd.events import QueueChanged
from spoolerd.message import Message, check_time, check_wire_text
from stores.common.rules import check_claim, int_id

from . import tables
from .core import SqliteCore
from .queue import DUE_HEAD

__all__ = ["SqliteLeases"]


class SqliteLeases(SqliteCore):
    async def claim(self, owner: str, lease: float, limit: int) -> list[Message]:
        if not check_claim(owner, lease, limit):
            return []
        now = self._clock()
        head = {"due": now, "after": float("-inf"), "id": 0, "expiry": now, "page": limit}

        def tx(conn: sqlite3.Connection) -> list[int]:
            # one writer at a time: nobody else claims between this read and the update
            ids = [row[0] for row in conn.execute(DUE_HEAD, head)]
            conn.executemany(
                "UPDATE messages SET lock_owner=?, lock_expiry=? WHERE id=?",
                [(owner, now + lease, i) for i in ids],
            )
            return ids

        def read(conn: sqlite3.Connection) -> list[Message]:
            loaded = []
            for mid in ids:
                try:
                    loaded.append(replace(tables.load_message(conn, mid, now), writable=False))
                except NotFound:
                    continue  # removed since it was claimed (another process's delete)
            return loaded

        def release(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE messages SET lock_owner=NULL, lock_expiry=NULL WHERE id=? AND lock_owner=?",
                [(i, owner) for i in ids],
            )

        # the messages are read after the claim commits, beside the writer: the store's write lock is not
        # held while their contents are copied out (a megabyte each, for large mail)
        ids = await self._writer.run(tx)
        if not ids:
            return []
        try:
            return await self._readers.run(read)
        except StoreError:  # claimed but not read: let them go now, not at the leases' expiry
            await self._writer.run(release)
            raise

    async def lock(self, message_id: str, owner: str, lease: float) -> Message:
        mid = int_id(message_id)
        check_time("lease", lease)
        check_wire_text("lock owner", owner, allow_empty=False)
        now = self._clock()

        def tx(conn: sqlite3.Connection) -> Message:
            tables.message_state(conn, mid).check_lockable(message_id, owner, now)
            conn.execute(
                "UPDATE messages SET lock_owner=?, lock_expiry=? WHERE id=?", (owner, now + lease, mid)
            )
            return replace(tables.load_message(conn, mid, now), writable=False)

        return await self._writer.run(tx)

    async def renew(self, message_id: str, owner: str, lease: float) -> None:
        mid = int_id(message_id)
        check_time("lease", lease)
        now = self._clock()

        def tx(conn: sqlite3.Connection) -> None:
            tables.require_lock(conn, mid, owner)
            conn.execute("UPDATE messages SET lock_expiry=? WHERE id=?", (now + lease, mid))

        await self._writer.run(tx)

    async def unlock(self, message_id: str, owner: str, *, retry_at: float | None = None) -> None:
        mid = int_id(message_id)
        check_time("retry_at", retry_at)

        def tx(conn: sqlite3.Connection) -> None:
            tables.require_lock(conn, mid, owner)
            if retry_at is None:
                conn.execute("UPDATE messages SET lock_owner=NULL, lock_expiry=NULL WHERE id=?", (mid,))
            else:
                conn.execute(
                    "UPDATE messages SET lock_owner=NULL, lock_expiry=NULL, next_attempt=?,"
                    " due_at=MAX(?, COALESCE(not_before, ?)) WHERE id=?",
                    (retry_at, retry_at, retry_at, mid),
                )

        reason = "unlock" if retry_at is None else "retry"
        await self._writer.run(tx, on_commit=self._announce(reason, message_id))

    async def postpone(self, message_ids: Sequence[str], until: float) -> int:
        check_time("until", until)
        ids = json.dumps([int_id(m) for m in message_ids])

        def tx(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "UPDATE messages SET next_attempt=?1, due_at=MAX(?1, COALESCE(not_before, ?1))"
                " WHERE id IN (SELECT value FROM json_each(?2)) AND queued=1 AND lock_owner IS NULL"
                " AND held=0 AND due_at < ?1",
                (until, ids),
            )
            return cursor.rowcount

        return await self._writer.run(tx)

    async def reclaim(self, owner: str) -> int:
        check_wire_text("lock owner", owner, allow_empty=False)
        pattern = owner.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "#%"

        def tx(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "UPDATE messages SET lock_owner=NULL, lock_expiry=NULL WHERE queued=1"
                " AND (lock_owner=? OR lock_owner LIKE ? ESCAPE '\\')",
                (owner, pattern),
            )
            return cursor.rowcount

        def announce(count: int) -> None:
            if count:
                self._hub.publish(QueueChanged(self.name, "reclaim", None))

        return await self._writer.run(tx, on_commit=announce)
