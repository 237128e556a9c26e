"""The finish statements, and the group commit of finishes: an attempt's end in one statement, and the
ends of concurrent attempts in one statement together.

A finish is a commit (a WAL flush) and a round trip of its own, and with many deliveries in flight many
finishes come within the same milliseconds. ``FinishGroup`` sends the first at once (on the loop's next
turn, so those of the same turn go with it); those that come while it is on its way wait and go together
as the next batch, one statement (``_FINISH_MANY``) that PostgreSQL commits on its own: no timer, no
wait for a lone finish. Each caller is answered from the batch's result once it has committed: finished,
or not (a message the batch could not finish, which the caller then finishes alone, as before, to learn
why). A batch that fails as a whole (a lost connection, a timeout) fails every finish in it with the
same error; one that a message's values or a conflicting row may have failed sends each of its finishes
back to finish alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from spoolerd.errors import StoreUnavailable
from spoolerd.message import MessageFlag, RecipientState, RecipientUpdate

from .db import Database

__all__ = ["FINISH", "NOT_FINAL_YET", "OUTCOMES", "SET_OUTCOME", "FinishGroup", "columns"]


def columns(updates: Sequence[RecipientUpdate]) -> list[list[Any]]:
    """The updates as the arrays ``unnest`` reads: index, state, final, next attempt, code, status,
    text, transport."""
    states = [RecipientState(u.state) for u in updates]
    return [
        [u.index for u in updates],
        [s.value for s in states],
        [s.final for s in states],
        [u.next_attempt for u in updates],
        [u.code for u in updates],
        [u.status for u in updates],
        [u.text for u in updates],
        [u.transport for u in updates],
    ]


_SENT_MASK = int(~(MessageFlag.SUBMIT | MessageFlag.UNSENT) & 0xFFFFFFFF)  # the flags a finish clears
SET_OUTCOME = (
    "UPDATE recipients r SET state=u.state, responsibility=u.final, attempts=r.attempts+1,"
    " next_attempt=u.next_attempt, last_code=u.code, last_status=u.status, last_text=u.text,"
    " transport=COALESCE(u.transport, r.transport)"
)
_TYPES = ("int", "text", "bool", "float8", "int", "text", "text", "text")  # ``columns``' arrays
_NAMES = "idx, state, final, next_attempt, code, status, text, transport"
OUTCOMES = f"unnest({', '.join('{}::' + t + '[]' for t in _TYPES)}) AS u({_NAMES})"
NOT_FINAL_YET = "r.state NOT IN ('delivered', 'failed')"

# ``finish`` in one statement ($1 message, $2 owner, $3 now, $4.. the outcomes' arrays): the row locked,
# then, if it is queued under $2's lock and every outcome names one of its recipients, the outcomes
# recorded and the message filed in its sent-mail folder, or deleted. Nothing changes otherwise, and the
# row tells why (``finished`` false).
FINISH = (
    "WITH m AS (SELECT id, queued, lock_owner, lock_expiry, delete_after_submit, sentmail_folder"
    "  FROM messages WHERE id=$1 FOR UPDATE),"
    " ok AS (SELECT id, delete_after_submit, sentmail_folder FROM m WHERE queued AND lock_owner=$2"
    "  AND (SELECT COUNT(*) FROM recipients WHERE message_id=$1 AND idx = ANY($4::int[]))"
    "   = cardinality($4::int[])),"
    f" r AS ({SET_OUTCOME} FROM {OUTCOMES.format(*(f'${n}' for n in range(4, 12)))}, ok"
    f"  WHERE r.message_id=ok.id AND NOT ok.delete_after_submit AND r.idx=u.idx AND {NOT_FINAL_YET}"
    "  RETURNING r.idx),"
    " gone AS (DELETE FROM messages WHERE id = (SELECT id FROM ok WHERE delete_after_submit)),"
    f" done AS (UPDATE messages SET flags = flags & {_SENT_MASK}, submit_flags=0, next_attempt=NULL,"
    "  due_at=NULL, queued=FALSE, lock_owner=NULL, lock_expiry=NULL,"
    "  folder_id = COALESCE((SELECT f.id FROM folders f, ok WHERE f.id = ok.sentmail_folder), folder_id),"
    "  filed_at = CASE WHEN EXISTS (SELECT 1 FROM folders f, ok WHERE f.id = ok.sentmail_folder)"
    "   THEN $3 ELSE filed_at END"
    "  WHERE id = (SELECT id FROM ok WHERE NOT delete_after_submit))"
    " SELECT queued, lock_owner, lock_expiry, EXISTS (SELECT 1 FROM ok) AS finished FROM m"
)

# ``FINISH`` for several messages at once ($1 their ids, $2 their owners, $3 their finish times, $4 the
# message of each outcome, $5.. the outcomes' arrays, each message's recipients named once): the rows
# locked in id order (two batches never wait for each other in a circle), then each message that is
# queued under its owner's lock and whose every outcome names one of its recipients finished as
# ``FINISH`` would. The row: the ids of those finished; the others are left as they were.
_BATCH_OUTCOMES = ", ".join(f"${n}::{t}[]" for n, t in enumerate(_TYPES, 5))
_FINISH_MANY = (
    "WITH m AS (SELECT id, queued, lock_owner, delete_after_submit, sentmail_folder"
    "  FROM messages WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE),"
    f" u AS (SELECT * FROM unnest($4::bigint[], {_BATCH_OUTCOMES}) AS u(message_id, {_NAMES})),"
    " ok AS (SELECT m.id, m.delete_after_submit, m.sentmail_folder, q.now"
    "  FROM m JOIN unnest($1::bigint[], $2::text[], $3::float8[]) AS q(id, owner, now) ON q.id = m.id"
    "  WHERE m.queued AND m.lock_owner = q.owner AND NOT EXISTS (SELECT 1 FROM u WHERE u.message_id = m.id"
    "   AND NOT EXISTS (SELECT 1 FROM recipients k WHERE k.message_id = m.id AND k.idx = u.idx))),"
    f" r AS ({SET_OUTCOME} FROM u, ok WHERE r.message_id = ok.id AND NOT ok.delete_after_submit"
    f"  AND u.message_id = ok.id AND r.idx = u.idx AND {NOT_FINAL_YET} RETURNING r.idx),"
    " gone AS (DELETE FROM messages WHERE id IN (SELECT id FROM ok WHERE delete_after_submit)),"
    f" done AS (UPDATE messages x SET flags = x.flags & {_SENT_MASK}, submit_flags=0, next_attempt=NULL,"
    "  due_at=NULL, queued=FALSE, lock_owner=NULL, lock_expiry=NULL, folder_id = COALESCE(f.id, x.folder_id),"
    "  filed_at = CASE WHEN f.id IS NULL THEN x.filed_at ELSE ok.now END"
    "  FROM ok LEFT JOIN folders f ON f.id = ok.sentmail_folder"
    "  WHERE x.id = ok.id AND NOT ok.delete_after_submit)"
    " SELECT COALESCE(array_agg(id), '{}') AS finished FROM ok"
)

_MOST = 256  # finishes in one batch
# what a batch may have failed for one message's sake (its values: 22, 23; a row it waited for: 40),
# by SQLSTATE class: each of its finishes goes again alone, to fail (or not) on its own
_PER_MESSAGE = ("22", "23", "40")


@dataclass(slots=True)
class Finish:
    """One finish without events, each recipient named once, waiting for its batch."""

    message_id: int
    owner: str
    outcomes: Sequence[RecipientUpdate]
    now: float
    answer: asyncio.Future[bool]


class FinishGroup:
    """The finishes of one store object: one batch in flight at a time, the next gathering meanwhile."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._waiting: list[Finish] = []
        self._sending: asyncio.Task[None] | None = None

    async def finish(
        self, message_id: int, owner: str, outcomes: Sequence[RecipientUpdate], now: float
    ) -> bool:
        """Whether the message was finished (committed) in a batch; False: it is as it was, and the
        caller finishes it alone (which says why it cannot be finished)."""
        loop = asyncio.get_running_loop()
        entry = Finish(message_id, owner, outcomes, now, loop.create_future())
        self._waiting.append(entry)
        if self._sending is None:
            self._sending = loop.create_task(self._send())
        # a caller cancelled while its finish waits is left out; once sent, its finish goes on
        return await entry.answer

    async def _send(self) -> None:
        try:
            while batch := self._next_batch():
                await self._run(batch)
        finally:
            self._sending = None

    def _next_batch(self) -> list[Finish]:
        """The waiting finishes, up to ``_MOST`` and one per message (a second finish of a message
        waits for the next batch, as it would have waited for the first's row lock)."""
        batch: list[Finish] = []
        rest: list[Finish] = []
        ids: set[int] = set()
        for entry in self._waiting:
            if entry.answer.done():  # its caller was cancelled
                continue
            if entry.message_id in ids or len(batch) == _MOST:
                rest.append(entry)
            else:
                ids.add(entry.message_id)
                batch.append(entry)
        self._waiting = rest
        return batch

    async def _run(self, batch: list[Finish]) -> None:
        try:
            finished = set(await self._statement(batch))
        except StoreUnavailable as exc:
            alone = getattr(exc.__cause__, "sqlstate", None) or ""
            for entry in _unanswered(batch):
                if alone[:2] in _PER_MESSAGE:
                    entry.answer.set_result(False)
                else:  # the same error for each, raised on its own
                    entry.answer.set_exception(_copy(exc))
            return
        except Exception as exc:
            for entry in _unanswered(batch):
                entry.answer.set_exception(exc)
            return
        except BaseException:  # the task cancelled (the loop closing): nobody learns whether it committed
            for entry in _unanswered(batch):
                entry.answer.set_exception(StoreUnavailable("the finish was interrupted"))
            raise
        for entry in _unanswered(batch):
            entry.answer.set_result(entry.message_id in finished)

    async def _statement(self, batch: list[Finish]) -> list[int]:
        row = await self._db.run_one(
            _FINISH_MANY,
            [e.message_id for e in batch],
            [e.owner for e in batch],
            [e.now for e in batch],
            [e.message_id for e in batch for _ in e.outcomes],
            *columns([u for e in batch for u in e.outcomes]),
        )
        return list(row["finished"])

    async def close(self) -> None:
        """Wait for the batch on its way and those gathered behind it (their callers are waiting)."""
        if self._sending is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._sending)


def _unanswered(batch: list[Finish]) -> list[Finish]:
    return [e for e in batch if not e.answer.done()]


def _copy(exc: StoreUnavailable) -> StoreUnavailable:
    err = StoreUnavailable(str(exc))
    err.__cause__ = exc.__cause__
    return err
