"""What the PostgreSQL store records under the spooler's lease: the preprocessors' changes, each
attempt's per-recipient outcomes, and the end of a submission (``finish``: Sent Items, delete, or leave)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from spoolerd.errors import InvalidArgument, NoRecipients, Submitted
from spoolerd.events import QueueChanged
from spoolerd.message import (
    Draft,
    Message,
    MessageFlag,
    NewRecipient,
    RecipientState,
    RecipientUpdate,
    SubmitFlag,
    validate_draft,
)
from spoolerd.outbox import OutboxEvent
from stores.common.rules import STATE_COLUMNS, MessageState, check_updates, int_id

from . import rows
from .core import PostgresCore
from .outbox import write_events

__all__ = ["PostgresOutcomes"]


class PostgresOutcomes(PostgresCore):
    async def complete_preprocessing(
        self,
        message_id: str,
        owner: str,
        *,
        content: bytes | None = None,
        recipients: Sequence[NewRecipient] | None = None,
    ) -> Message:
        mid = int_id(message_id)
        if recipients is not None:
            validate_draft(Draft(content=b"", recipients=recipients))
        now = self._clock()

        async def tx(conn: Any) -> Message:
            await rows.require_lock(conn, mid, owner)
            if content is not None:
                await conn.execute("UPDATE contents SET data=$1 WHERE message_id=$2", bytes(content), mid)
                await conn.execute("UPDATE messages SET size=$1 WHERE id=$2", len(content), mid)
            if recipients is not None:
                if await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM recipients WHERE message_id=$1 AND attempts > 0)", mid
                ):
                    raise Submitted(f"message {message_id} has delivery attempts; its recipients are fixed")
                if not recipients:
                    raise NoRecipients(f"preprocessing left message {message_id} with no recipients")
                await conn.execute("DELETE FROM recipients WHERE message_id=$1", mid)
                await rows.insert_recipients(conn, mid, recipients)
            await conn.execute(
                "UPDATE messages SET submit_flags = submit_flags & $1 WHERE id=$2",
                ~SubmitFlag.PREPROCESS & 0xFFFFFFFF,
                mid,
            )
            return replace(await rows.load_message(conn, mid, now), writable=False)

        return await self._database().run(tx)

    async def record_outcomes(
        self,
        message_id: str,
        owner: str,
        updates: Sequence[RecipientUpdate],
        *,
        delay_reported: bool = False,
        events: Sequence[OutboxEvent] = (),
    ) -> None:
        mid = int_id(message_id)
        check_updates(updates)
        now = self._clock()

        async def tx(conn: Any) -> None:
            await rows.require_lock(conn, mid, owner)
            if delay_reported:
                await conn.execute("UPDATE messages SET delay_reported=TRUE WHERE id=$1", mid)
            await _apply_updates(conn, mid, message_id, updates)
            await write_events(conn, events, now)

        await self._database().run(tx)

    async def finish(
        self,
        message_id: str,
        owner: str,
        *,
        outcomes: Sequence[RecipientUpdate] = (),
        events: Sequence[OutboxEvent] = (),
    ) -> None:
        mid = int_id(message_id)
        check_updates(outcomes)
        now = self._clock()

        async def tx(conn: Any) -> None:
            row = await rows.state_row(conn, mid, f"{STATE_COLUMNS}, sentmail_folder, delete_after_submit")
            MessageState.of(row).check_finishable(message_id, owner)
            await _apply_updates(conn, mid, message_id, outcomes)
            await write_events(conn, events, now)
            if row["delete_after_submit"]:
                await conn.execute("DELETE FROM messages WHERE id=$1", mid)
                return
            await conn.execute(
                "UPDATE messages SET flags = flags & $1, submit_flags=0, next_attempt=NULL, due_at=NULL,"
                " queued=FALSE, lock_owner=NULL, lock_expiry=NULL,"
                " folder_id = COALESCE((SELECT id FROM folders WHERE id=$2), folder_id),"
                " filed_at = CASE WHEN EXISTS (SELECT 1 FROM folders WHERE id=$2) THEN $3 ELSE filed_at END"
                " WHERE id=$4",
                ~(MessageFlag.SUBMIT | MessageFlag.UNSENT) & 0xFFFFFFFF,
                row["sentmail_folder"],
                now,
                mid,
            )

        # announced after the commit, folded with others (``Database.finished``): nothing for the other
        # daemons' spoolers to do, a hint for their watchers
        db = self._database()
        await db.run(tx)
        db.finished()
        self._hub.publish(QueueChanged(self.name, "finish", message_id))


_UPDATE_ALL = (
    "UPDATE recipients r SET state=u.state, responsibility=u.final, attempts=r.attempts+1,"
    " next_attempt=u.next_attempt, last_code=u.code, last_status=u.status, last_text=u.text,"
    " transport=COALESCE(u.transport, r.transport)"
    " FROM unnest($2::int[], $3::text[], $4::bool[], $5::float8[], $6::int[], $7::text[], $8::text[],"
    " $9::text[]) AS u(idx, state, final, next_attempt, code, status, text, transport)"
    " WHERE r.message_id=$1 AND r.idx=u.idx AND r.state NOT IN ('delivered', 'failed') RETURNING r.idx"
)


async def _apply_updates(conn: Any, mid: int, message_id: str, updates: Sequence[RecipientUpdate]) -> None:
    """Record each outcome; a recipient that already has a final one keeps it (exactly one each). One
    statement for all of them (an attempt's outcomes are one per recipient); a recipient named twice is
    recorded in order, one statement each."""
    if not updates:
        return
    indexes = [u.index for u in updates]
    if len(set(indexes)) < len(indexes):
        for u in updates:
            await _apply_updates(conn, mid, message_id, [u])
        return
    states = [RecipientState(u.state) for u in updates]
    updated = await conn.fetch(
        _UPDATE_ALL,
        mid,
        indexes,
        [s.value for s in states],
        [s.final for s in states],
        [u.next_attempt for u in updates],
        [u.code for u in updates],
        [u.status for u in updates],
        [u.text for u in updates],
        [u.transport for u in updates],
    )
    if len(updated) < len(indexes):  # final already, or no such recipient
        found = await conn.fetch(
            "SELECT idx FROM recipients WHERE message_id=$1 AND idx = ANY($2::int[])", mid, indexes
        )
        missing = set(indexes) - {r["idx"] for r in found}
        if missing:
            raise InvalidArgument(f"message {message_id} has no recipient #{min(missing)}")
