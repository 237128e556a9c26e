"""The PostgreSQL store's outgoing queue: submitting (the rule is ``stores.common.queueing``), aborting,
holding, and reading the queue in submit order."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

from spoolerd.errors import NoRecipients
from spoolerd.events import QueueChanged
from spoolerd.message import Draft, MessageFlag, QueueEntry
from spoolerd.store import QueuedRecipients
from stores.common.queueing import PLAN_COLUMNS, QUEUED_COLUMNS, Queued, QueueRequest
from stores.common.rows import QUEUE_COLUMNS, queue_entry_from_row
from stores.common.rules import STATE_COLUMNS, MessageState, int_id

from . import rows
from .core import PostgresCore

__all__ = ["PostgresQueue"]

_QUEUE = (
    f"UPDATE messages SET {', '.join(f'{c}=${n}' for n, c in enumerate(QUEUED_COLUMNS, 1))}"
    f" WHERE id=${len(QUEUED_COLUMNS) + 1}"
)
_PENDING_AGAIN = (
    "UPDATE recipients SET responsibility=FALSE, state='pending', attempts=0, next_attempt=NULL,"
    " last_code=NULL, last_status=NULL, last_text=NULL, transport=NULL WHERE message_id=$1"
)
_NOT_FINAL = " AND state NOT IN ('delivered', 'failed')"


# The due head, a page of it: unlocked messages from the due index, locked ones (whose lease is over,
# unless $4 is infinite) from the lock index, in due order from after ($2, $3); what it costs does not
# grow with the messages that are not due.
_DUE_WHERE = "queued AND NOT held AND due_at <= $1 AND (due_at, id) > ($2, $3)"
DUE_HEAD = (
    f"(SELECT {QUEUE_COLUMNS} FROM messages WHERE lock_owner IS NULL AND {_DUE_WHERE}"
    "  ORDER BY due_at, id LIMIT $5)"
    f" UNION ALL (SELECT {QUEUE_COLUMNS} FROM messages WHERE lock_owner IS NOT NULL"
    f"  AND lock_expiry <= $4 AND {_DUE_WHERE} ORDER BY due_at, id LIMIT $5)"
    " ORDER BY due_at, id LIMIT $5"
)


async def _queue(conn: Any, mid: int, queued: Queued) -> None:
    await conn.execute(_QUEUE, *queued.values(), mid)
    await conn.execute(_PENDING_AGAIN + ("" if queued.resend else _NOT_FINAL), mid)


class PostgresQueue(PostgresCore):
    # ------------------------------------------------------------------ client side

    async def submit(
        self, message_id: str, *, preprocess: bool = False, lock: tuple[str, float] | None = None
    ) -> None:
        mid = int_id(message_id)
        request = QueueRequest.checked(self._clock(), preprocess, lock)

        async def tx(conn: Any) -> None:
            row = await rows.state_row(conn, mid, f"{STATE_COLUMNS}, {PLAN_COLUMNS}")
            MessageState.of(row).refuse_if_queued(request.now, "submitted again")
            if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM recipients WHERE message_id=$1)", mid):
                raise NoRecipients(f"message {message_id} has no recipients")
            await _queue(conn, mid, request.plan_row(row))

        await self._changed(tx, "submit", message_id)

    async def submit_new(
        self, folder_id: str, draft: Draft, *, preprocess: bool = False, lock: tuple[str, float] | None = None
    ) -> str:
        request = QueueRequest.checked_new(draft, self._clock(), preprocess, lock)

        async def tx(conn: Any) -> str:
            return str(await rows.insert_message(conn, folder_id, draft, request.now, request))

        message_id: str = await self._database().run(tx, notify=True)
        self._hub.publish(QueueChanged(self.name, "submit", message_id))
        return message_id

    async def abort_submit(self, message_id: str) -> None:
        mid = int_id(message_id)
        now = self._clock()

        async def tx(conn: Any) -> None:
            (await rows.message_state(conn, mid)).check_abortable(message_id, now)
            await conn.execute(
                "UPDATE messages SET flags = flags & $1, submit_flags=0, client_submit_time=NULL,"
                " next_attempt=NULL, due_at=NULL, queued=FALSE, lock_owner=NULL, lock_expiry=NULL"
                " WHERE id=$2",
                ~MessageFlag.SUBMIT & 0xFFFFFFFF,
                mid,
            )

        await self._changed(tx, "abort", message_id)

    async def hold(self, message_id: str, held: bool = True) -> None:
        mid = int_id(message_id)

        async def tx(conn: Any) -> None:
            (await rows.message_state(conn, mid)).require_queued(message_id)
            await conn.execute("UPDATE messages SET held=$1 WHERE id=$2", held, mid)

        await self._changed(tx, "hold" if held else "release", message_id)

    # ------------------------------------------------------------------ spooler side

    async def outgoing_queue(
        self, *, due_at: float | None = None, include_locked: bool = True
    ) -> AsyncIterator[QueueEntry]:
        page = self._settings.queue_page
        after: tuple[float, int] = (-math.inf, 0)
        order = "client_submit_time" if due_at is None else "due_at"
        while True:
            now = self._clock()
            if due_at is None:  # the whole queue, in submission order
                sql = f"SELECT {QUEUE_COLUMNS} FROM messages WHERE queued"
                sql += " AND (client_submit_time, id) > ($1, $2)"
                args: list[Any] = [*after]
                if not include_locked:
                    args.append(now)
                    sql += f" AND (lock_owner IS NULL OR lock_expiry <= ${len(args)})"
                args.append(page)
                sql += f" ORDER BY client_submit_time, id LIMIT ${len(args)}"
            else:  # the due head, in due order (DUE_HEAD)
                sql = DUE_HEAD
                args = [due_at, *after, now if not include_locked else math.inf, page]

            async def read(conn: Any, sql: str = sql, args: list[Any] = args) -> list[Any]:
                return list(await conn.fetch(sql, *args))

            found = await self._database().run(read, read_only=True)
            for r in found:
                yield queue_entry_from_row(r, now)
            if len(found) < page:
                return
            after = (found[-1][order], found[-1]["id"])

    async def queued_recipients(self) -> list[QueuedRecipients]:
        async def read(conn: Any) -> list[QueuedRecipients]:
            found = await conn.fetch(
                "SELECT m.id, COUNT(r.idx), m.next_attempt IS NOT NULL OR COALESCE(BOOL_OR(r.attempts > 0"
                " OR r.state = 'deferred'), FALSE) FROM messages m LEFT JOIN recipients r"
                " ON r.message_id = m.id AND r.state NOT IN ('delivered', 'failed') WHERE m.queued"
                " GROUP BY m.id"
            )
            return [QueuedRecipients(str(mid), waiting, deferred) for mid, waiting, deferred in found]

        return await self._database().run(read, read_only=True)

    async def next_due(self) -> float | None:
        async def read(conn: Any) -> float | None:
            row = await conn.fetchrow(
                "SELECT (SELECT MIN(due_at) FROM messages WHERE queued AND lock_owner IS NULL AND NOT held)"
                " AS free, (SELECT MIN(GREATEST(due_at, lock_expiry)) FROM messages"
                "  WHERE lock_owner IS NOT NULL AND queued AND NOT held) AS held"
            )
            times = [t for t in (row["free"], row["held"]) if t is not None]
            return min(times) if times else None

        return await self._database().run(read, read_only=True)
