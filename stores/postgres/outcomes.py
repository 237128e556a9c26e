"""What the PostgreSQL store records under the spooler's lease: the preprocessors' changes, each
attempt's per-recipient outcomes, and the end of a submission (``finish``: Sent Items, delete, or leave)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from spoolerd.errors import InvalidArgument, NoRecipients, NotFound, Submitted
from spoolerd.events import QueueChanged
from spoolerd.lines import lines_of
from spoolerd.message import (
    Draft,
    Message,
    NewRecipient,
    RecipientUpdate,
    SubmitFlag,
    validate_draft,
)
from spoolerd.outbox import OutboxEvent
from stores.common.rules import MessageState, check_updates, int_id

from . import rows
from .core import PostgresCore
from .finishes import FINISH, NOT_FINAL_YET, OUTCOMES, SET_OUTCOME, columns
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
                lines = int(lines_of(content))
                await conn.execute(
                    "UPDATE messages SET size=$1, lines=$2 WHERE id=$3", len(content), lines, mid
                )
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
        db = self._database()
        if not events and _distinct(outcomes):  # the common end of an attempt: with others', or alone
            if not await self._finishing().finish(mid, owner, outcomes, now):
                row = await db.run_one(FINISH, mid, owner, now, *columns(outcomes))  # alone, as before
                if not _finished(row, message_id, owner):
                    await db.run(lambda conn: _apply_updates(conn, mid, message_id, outcomes))  # says why
        else:

            async def tx(conn: Any) -> None:
                rest = outcomes
                if not _distinct(outcomes):  # a recipient named twice: recorded in order, then the rest
                    MessageState.of(await rows.state_row(conn, mid)).check_finishable(message_id, owner)
                    await _apply_updates(conn, mid, message_id, outcomes)
                    rest = ()
                await write_events(conn, events, now)
                row = await conn.fetchrow(FINISH, mid, owner, now, *columns(rest))
                if not _finished(row, message_id, owner):
                    await _apply_updates(conn, mid, message_id, rest)  # says why

            await db.run(tx)
        # announced after the commit, folded with others (``Database.finished``): nothing for the other
        # daemons' spoolers to do, a hint for their watchers
        db.finished()
        self._hub.publish(QueueChanged(self.name, "finish", message_id))


def _finished(row: Any, message_id: str, owner: str) -> bool:
    """What ``FINISH`` came to: True if it finished the message; else the error for a message that is
    not there or not finishable by ``owner``, and False when only an outcome can say why (an unknown
    recipient: ``_apply_updates`` raises it)."""
    if row is None:
        raise NotFound(f"no message with id {message_id}")
    if row["finished"]:
        return True
    MessageState.of(row).check_finishable(message_id, owner)
    return False


def _distinct(updates: Sequence[RecipientUpdate]) -> bool:
    """No recipient named twice (such updates are recorded one statement each, in order)."""
    return len({u.index for u in updates}) == len(updates)


async def _apply_updates(conn: Any, mid: int, message_id: str, updates: Sequence[RecipientUpdate]) -> None:
    """Record each outcome; a recipient that already has a final one keeps it (exactly one each). One
    statement for all of them (an attempt's outcomes are one per recipient); a recipient named twice is
    recorded in order, one statement each."""
    if not updates:
        return
    if not _distinct(updates):
        for u in updates:
            await _apply_updates(conn, mid, message_id, [u])
        return
    updated = await conn.fetch(
        f"{SET_OUTCOME} FROM {OUTCOMES.format(*(f'${n}' for n in range(2, 10)))}"
        f" WHERE r.message_id=$1 AND r.idx=u.idx AND {NOT_FINAL_YET} RETURNING r.idx",
        mid,
        *columns(updates),
    )
    indexes = [u.index for u in updates]
    if len(updated) < len(indexes):  # final already, or no such recipient
        found = await conn.fetch(
            "SELECT idx FROM recipients WHERE message_id=$1 AND idx = ANY($2::int[])", mid, indexes
        )
        missing = set(indexes) - {r["idx"] for r in found}
        if missing:
            raise InvalidArgument(f"message {message_id} has no recipient #{min(missing)}")
