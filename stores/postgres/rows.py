"""Lookups, checks and the mapping between rows and message values, for the PostgreSQL store.

Every function takes the connection of the transaction it runs in. Pure helpers shared with the SQLite
store (lease liveness, row → value mappings) come from ``stores.sqlite.tables``: one fact, one helper.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from spoolerd.errors import LockLost, NotFound, NotInQueue
from spoolerd.message import Draft, Folder, FolderRole, Message, MessageFlag, NewRecipient, RecipientKind
from stores.sqlite.tables import (
    MESSAGE_COLUMNS,
    RECIPIENT_COLUMNS,
    folder_from_row,
    int_id,
    message_from_row,
    recipient_from_row,
)

__all__ = [
    "QUEUE_COLUMNS",
    "all_folders",
    "draft_values",
    "folder_by_id",
    "folder_by_role",
    "insert_recipients",
    "load_message",
    "receive_table",
    "require_lock",
    "state_row",
]

QUEUE_COLUMNS = (
    "id, client_submit_time, due_at, flags, submit_flags, priority, sender, subject, size, lock_owner,"
    " lock_expiry, not_before, held"
)
Row = tuple[Any, ...]


async def all_folders(conn: Any) -> list[Folder]:
    rows = await conn.fetch("SELECT id, name, role, parent_id FROM folders ORDER BY id")
    return [folder_from_row(tuple(r)) for r in rows]


async def folder_by_role(conn: Any, role: FolderRole) -> Folder:
    row = await conn.fetchrow("SELECT id, name, role, parent_id FROM folders WHERE role=$1", role.value)
    if row is None:
        raise NotFound(f"the store has no {role.value} folder")
    return folder_from_row(tuple(row))


async def folder_by_id(conn: Any, folder_id: str) -> Folder:
    fid = int_id(folder_id, "folder")
    row = await conn.fetchrow("SELECT id, name, role, parent_id FROM folders WHERE id=$1", fid)
    if row is None:
        raise NotFound(f"no folder with id {folder_id!r}")
    return folder_from_row(tuple(row))


async def receive_table(conn: Any) -> dict[str, str]:
    rows = await conn.fetch("SELECT message_class, folder_id FROM receive_folders")
    return {r[0]: str(r[1]) for r in rows}


async def draft_values(conn: Any, draft: Draft, now: float) -> Row:
    """message_class, flags, priority, sender, subject, size, created_at, not_before, sentmail_folder,
    delete_after_submit, ndr_requested, dr_requested."""
    sentmail = (
        None if draft.sentmail_folder is None else int((await folder_by_id(conn, draft.sentmail_folder)).id)
    )
    return (
        draft.message_class, int(draft.flags & ~MessageFlag.SUBMIT), draft.priority, draft.sender,
        draft.subject, len(draft.content), now, draft.not_before, sentmail, bool(draft.delete_after_submit),
        bool(draft.ndr_requested), bool(draft.dr_requested),
    )  # fmt: skip


async def insert_recipients(conn: Any, mid: int, recipients: Sequence[NewRecipient]) -> None:
    await conn.executemany(
        "INSERT INTO recipients (message_id, idx, address, display_name, address_type, kind)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        [
            (mid, i, r.address, r.display_name, r.resolved_type, RecipientKind(r.kind).value)
            for i, r in enumerate(recipients)
        ],
    )


async def state_row(conn: Any, mid: int, *, for_update: bool = True) -> tuple[bool, str | None, float | None]:
    """queued, lock_owner, lock_expiry; the row stays locked until the transaction ends."""
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(f"SELECT queued, lock_owner, lock_expiry FROM messages WHERE id=$1{lock}", mid)
    if row is None:
        raise NotFound(f"no message with id {mid}")
    return (row[0], row[1], row[2])


async def require_lock(conn: Any, mid: int, owner: str) -> None:
    queued, lock_owner, _expiry = await state_row(conn, mid)
    if not queued:
        raise NotInQueue(f"message {mid} is not in the outgoing queue")
    if lock_owner != owner:
        # An expired lease still held by the same owner is kept: nobody else has taken it over.
        raise LockLost(f"{owner} does not hold the lock on message {mid}")


async def load_message(conn: Any, mid: int, now: float) -> Message:
    row = await conn.fetchrow(
        f"SELECT {MESSAGE_COLUMNS}, c.data FROM messages m JOIN contents c ON c.message_id = m.id"
        " WHERE m.id=$1",
        mid,
    )
    if row is None:
        raise NotFound(f"no message with id {mid}")
    rows = await conn.fetch(
        f"SELECT {RECIPIENT_COLUMNS} FROM recipients WHERE message_id=$1 ORDER BY idx", mid
    )
    recipients = tuple(recipient_from_row(tuple(r)) for r in rows)
    return message_from_row(tuple(row), recipients, now)
