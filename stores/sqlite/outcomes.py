"""What the SQLite store records under the spooler's lease: the preprocessors' changes, each attempt's
per-recipient outcomes, and the end of a submission (``finish``: Sent Items, delete, or leave)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace

from spoolerd.errors import InvalidArgument, NoRecipients, Submitted
from spoolerd.lines import lines_of
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

from . import tables
from .core import SqliteCore
from .outbox import write_events

__all__ = ["SqliteOutcomes"]


class SqliteOutcomes(SqliteCore):
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

        def tx(conn: sqlite3.Connection) -> Message:
            tables.require_lock(conn, mid, owner)
            if content is not None:
                conn.execute("UPDATE contents SET data=? WHERE message_id=?", (bytes(content), mid))
                lines = int(lines_of(content))
                conn.execute("UPDATE messages SET size=?, lines=? WHERE id=?", (len(content), lines, mid))
            if recipients is not None:
                (tried,) = conn.execute(
                    "SELECT COUNT(*) FROM recipients WHERE message_id=? AND attempts > 0", (mid,)
                ).fetchone()
                if tried:
                    raise Submitted(f"message {message_id} has delivery attempts; its recipients are fixed")
                if not recipients:
                    raise NoRecipients(f"preprocessing left message {message_id} with no recipients")
                conn.execute("DELETE FROM recipients WHERE message_id=?", (mid,))
                tables.insert_recipients(conn, mid, recipients)
            conn.execute(
                "UPDATE messages SET submit_flags = submit_flags & ? WHERE id=?",
                (~SubmitFlag.PREPROCESS & 0xFFFFFFFF, mid),
            )
            return replace(tables.load_message(conn, mid, now), writable=False)

        return await self._writer.run(tx)

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

        def tx(conn: sqlite3.Connection) -> None:
            tables.require_lock(conn, mid, owner)
            if delay_reported:
                conn.execute("UPDATE messages SET delay_reported=1 WHERE id=?", (mid,))
            _apply_updates(conn, mid, message_id, updates)
            write_events(conn, events, now)

        await self._writer.run(tx)

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

        def tx(conn: sqlite3.Connection) -> None:
            row = tables.state_row(conn, mid, f"{STATE_COLUMNS}, sentmail_folder, delete_after_submit")
            MessageState.of(row).check_finishable(message_id, owner)
            _apply_updates(conn, mid, message_id, outcomes)
            write_events(conn, events, now)
            conn.execute(_FINISH, (_FINISHED_FLAGS, row["sentmail_folder"], now, mid))
            if row["delete_after_submit"]:
                conn.execute("DELETE FROM messages WHERE id=?", (mid,))

        await self._writer.run(tx, on_commit=self._announce("finish", message_id))


_FINISHED_FLAGS = ~(MessageFlag.SUBMIT | MessageFlag.UNSENT) & 0xFFFFFFFF
# out of the queue, and filed in its sent-mail folder if it has one that is still there: one statement
_FINISH = (
    "UPDATE messages SET flags = flags & ?1, submit_flags=0, next_attempt=NULL, due_at=NULL, queued=0,"
    " lock_owner=NULL, lock_expiry=NULL,"
    " folder_id = COALESCE((SELECT id FROM folders WHERE id=?2), folder_id),"
    " filed_at = CASE WHEN (SELECT id FROM folders WHERE id=?2) IS NULL THEN filed_at ELSE ?3 END"
    " WHERE id=?4"
)


def _apply_updates(
    conn: sqlite3.Connection, mid: int, message_id: str, updates: Sequence[RecipientUpdate]
) -> None:
    """Record each outcome; a recipient that already has a final one keeps it (exactly one each). Two
    statements for any number of recipients (two for each cost 5 recipients 3.6% of the daemon's CPU):
    the states read at once, then the updates written at once."""
    if not updates:
        return
    states = {row["idx"]: RecipientState(row["state"]) for row in conn.execute(_STATES, (mid,))}
    rows = []
    for u in updates:  # in order: of two outcomes for one recipient, a final first keeps the second out
        found = states.get(u.index)
        if found is None:
            raise InvalidArgument(f"message {message_id} has no recipient #{u.index}")
        if found.final:
            continue
        state = states[u.index] = RecipientState(u.state)
        rows.append((state.value, int(state.final), u.next_attempt, u.code, u.status, u.text, u.transport,
                     mid, u.index))  # fmt: skip
    conn.executemany(_RECORD, rows)


_STATES = "SELECT idx, state FROM recipients WHERE message_id=?"
_RECORD = (
    "UPDATE recipients SET state=?, responsibility=?, attempts=attempts+1, next_attempt=?,"
    " last_code=?, last_status=?, last_text=?, transport=COALESCE(?, transport) WHERE message_id=? AND idx=?"
)
