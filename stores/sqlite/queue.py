"""The SQLite store's outgoing queue: submitting (the rule is ``stores.common.queueing``), aborting,
holding, and reading the queue in submit order."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from spoolerd.errors import NoRecipients
from spoolerd.events import QueueChanged
from spoolerd.message import Draft, MessageFlag, QueueEntry
from spoolerd.store import QueuedRecipients
from stores.common.queueing import PLAN_COLUMNS, QUEUED_COLUMNS, Queued, QueueRequest
from stores.common.rows import QUEUE_COLUMNS, queue_entry_from_row
from stores.common.rules import STATE_COLUMNS, MessageState, int_id

from . import tables
from .core import SqliteCore

__all__ = ["SqliteQueue"]

_QUEUE = f"UPDATE messages SET {', '.join(f'{c}=?' for c in QUEUED_COLUMNS)} WHERE id=?"
_PENDING_AGAIN = (
    "UPDATE recipients SET responsibility=0, state='pending', attempts=0, next_attempt=NULL,"
    " last_code=NULL, last_status=NULL, last_text=NULL, transport=NULL WHERE message_id=?"
)
_NOT_FINAL = " AND state NOT IN ('delivered', 'failed')"


# The due head, a page of it: unlocked messages from the due index, locked ones (whose lease is over,
# unless ``expiry`` is infinite) from the lock index, in due order from after (due_at, id); what it
# costs does not grow with the messages that are not due.
_DUE_WHERE = "queued = 1 AND held = 0 AND due_at <= :due AND (due_at, id) > (:after, :id)"
DUE_HEAD = (
    f"SELECT * FROM (SELECT {QUEUE_COLUMNS} FROM messages WHERE lock_owner IS NULL AND {_DUE_WHERE}"
    "  ORDER BY due_at, id LIMIT :page)"
    f" UNION ALL SELECT * FROM (SELECT {QUEUE_COLUMNS} FROM messages WHERE lock_owner IS NOT NULL"
    f"  AND lock_expiry <= :expiry AND {_DUE_WHERE} ORDER BY due_at, id LIMIT :page)"
    " ORDER BY due_at, id LIMIT :page"
)


def _queue(conn: sqlite3.Connection, mid: int, queued: Queued) -> None:
    conn.execute(_QUEUE, (*queued.values(), mid))
    conn.execute(_PENDING_AGAIN + ("" if queued.resend else _NOT_FINAL), (mid,))


class SqliteQueue(SqliteCore):
    # ------------------------------------------------------------------ client side

    async def submit(
        self, message_id: str, *, preprocess: bool = False, lock: tuple[str, float] | None = None
    ) -> None:
        mid = int_id(message_id)
        request = QueueRequest.checked(self._clock(), preprocess, lock)

        def tx(conn: sqlite3.Connection) -> None:
            row = tables.state_row(conn, mid, f"{STATE_COLUMNS}, {PLAN_COLUMNS}")
            MessageState.of(row).refuse_if_queued(request.now, "submitted again")
            (count,) = conn.execute("SELECT COUNT(*) FROM recipients WHERE message_id=?", (mid,)).fetchone()
            if count == 0:
                raise NoRecipients(f"message {message_id} has no recipients")
            _queue(conn, mid, request.plan_row(row))

        await self._writer.run(tx, on_commit=self._announce("submit", message_id))

    async def submit_new(
        self, folder_id: str, draft: Draft, *, preprocess: bool = False, lock: tuple[str, float] | None = None
    ) -> str:
        request = QueueRequest.checked_new(draft, self._clock(), preprocess, lock)
        new = tables.NewMessage.of(folder_id, draft, request.now, request)

        def tx(conn: sqlite3.Connection) -> str:
            return str(tables.insert_message(conn, new))

        def publish(message_id: str) -> None:
            self._hub.publish(QueueChanged(self.name, "submit", message_id))

        return await self._writer.run(tx, on_commit=publish)

    async def abort_submit(self, message_id: str) -> None:
        mid = int_id(message_id)
        now = self._clock()

        def tx(conn: sqlite3.Connection) -> None:
            tables.message_state(conn, mid).check_abortable(message_id, now)
            conn.execute(
                "UPDATE messages SET flags = flags & ?, submit_flags=0, client_submit_time=NULL,"
                " next_attempt=NULL, due_at=NULL, queued=0, lock_owner=NULL, lock_expiry=NULL WHERE id=?",
                (~MessageFlag.SUBMIT & 0xFFFFFFFF, mid),
            )

        await self._writer.run(tx, on_commit=self._announce("abort", message_id))

    async def hold(self, message_id: str, held: bool = True) -> None:
        mid = int_id(message_id)

        def tx(conn: sqlite3.Connection) -> None:
            tables.message_state(conn, mid).require_queued(message_id)
            conn.execute("UPDATE messages SET held=? WHERE id=?", (int(held), mid))

        await self._writer.run(tx, on_commit=self._announce("hold" if held else "release", message_id))

    # ------------------------------------------------------------------ spooler side

    async def outgoing_queue(
        self, *, due_at: float | None = None, include_locked: bool = True
    ) -> AsyncIterator[QueueEntry]:
        page = self._settings.queue_page
        after: tuple[float, int] = (float("-inf"), 0)
        order = "client_submit_time" if due_at is None else "due_at"
        while True:
            now = self._clock()
            sql: str
            args: list[Any] | dict[str, Any]
            if due_at is None:  # the whole queue, in submission order
                sql = f"SELECT {QUEUE_COLUMNS} FROM messages WHERE queued=1"
                sql += " AND (client_submit_time, id) > (?, ?)"
                args = [*after]
                if not include_locked:
                    sql += " AND (lock_owner IS NULL OR lock_expiry <= ?)"
                    args.append(now)
                sql += " ORDER BY client_submit_time, id LIMIT ?"
                args.append(page)
            else:  # the due head, in due order (DUE_HEAD)
                sql = DUE_HEAD
                expiry = now if not include_locked else float("inf")
                args = {"due": due_at, "after": after[0], "id": after[1], "expiry": expiry, "page": page}
            rows = await self._readers.run(partial(tables.fetch_all, sql=sql, args=args))
            for r in rows:
                yield queue_entry_from_row(r, now)
            if len(rows) < page:
                return
            after = (rows[-1][order], rows[-1]["id"])

    async def queued_recipients(self) -> list[QueuedRecipients]:
        sql = (
            "SELECT m.id, COUNT(r.idx), m.next_attempt IS NOT NULL OR COALESCE(MAX(r.attempts > 0"
            " OR r.state = 'deferred'), 0) FROM messages m LEFT JOIN recipients r ON r.message_id = m.id"
            " AND r.state NOT IN ('delivered', 'failed') WHERE m.queued = 1 GROUP BY m.id"
        )
        rows = await self._readers.run(partial(tables.fetch_all, sql=sql, args=[]))
        return [QueuedRecipients(str(mid), waiting, bool(deferred)) for mid, waiting, deferred in rows]

    async def next_due(self) -> float | None:
        def read(conn: sqlite3.Connection) -> float | None:
            (free,) = conn.execute(
                "SELECT MIN(due_at) FROM messages WHERE queued=1 AND lock_owner IS NULL AND held=0"
            ).fetchone()
            (held,) = conn.execute(
                "SELECT MIN(MAX(due_at, lock_expiry)) FROM messages"
                " WHERE lock_owner IS NOT NULL AND queued=1 AND held=0"
            ).fetchone()
            times = [t for t in (free, held) if t is not None]
            return min(times) if times else None

        return await self._readers.run(read)
