"""Lookups and writes the PostgreSQL store's parts share.

Every function takes the connection of the transaction it runs in. What a row means (and the rules of
leases and the queue) is dialect-neutral: ``stores.common``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from spoolerd.errors import NotFound
from spoolerd.message import Draft, Folder, FolderRole, Message, NewRecipient
from stores.common.queueing import NEW_QUEUED_COLUMNS, QueueRequest
from stores.common.rows import (
    DRAFT_COLUMNS,
    FOLDER_COLUMNS,
    LOADED_COLUMNS,
    NEW_RECIPIENT_COLUMNS,
    RECIPIENT_COLUMNS,
    DraftRow,
    folder_from_row,
    message_from_row,
    new_recipient_values,
    recipient_from_row,
)
from stores.common.rules import STATE_COLUMNS, MessageState, int_id

__all__ = [
    "all_folders",
    "draft_row",
    "folder_by_id",
    "folder_by_role",
    "insert_content",
    "insert_message",
    "insert_recipients",
    "load_message",
    "load_messages",
    "message_state",
    "placeholders",
    "receive_table",
    "require_lock",
    "state_row",
]


def placeholders(count: int, first: int = 1) -> str:
    """``$first, …`` for ``count`` values."""
    return ", ".join(f"${n}" for n in range(first, first + count))


async def all_folders(conn: Any) -> list[Folder]:
    rows = await conn.fetch(f"SELECT {FOLDER_COLUMNS} FROM folders ORDER BY id")
    return [folder_from_row(r) for r in rows]


async def folder_by_role(conn: Any, role: FolderRole) -> Folder:
    row = await conn.fetchrow(f"SELECT {FOLDER_COLUMNS} FROM folders WHERE role=$1", role.value)
    if row is None:
        raise NotFound(f"the store has no {role.value} folder")
    return folder_from_row(row)


async def folder_by_id(conn: Any, folder_id: str) -> Folder:
    fid = int_id(folder_id, "folder")
    row = await conn.fetchrow(f"SELECT {FOLDER_COLUMNS} FROM folders WHERE id=$1", fid)
    if row is None:
        raise NotFound(f"no folder with id {folder_id!r}")
    return folder_from_row(row)


async def receive_table(conn: Any) -> dict[str, str]:
    rows = await conn.fetch("SELECT message_class, folder_id FROM receive_folders")
    return {r["message_class"]: str(r["folder_id"]) for r in rows}


async def draft_row(conn: Any, draft: Draft) -> DraftRow:
    """The draft's columns, its sent-mail folder looked up (``NotFound`` if there is no such folder)."""
    sentmail = draft.sentmail_folder
    return DraftRow.of(draft, None if sentmail is None else int((await folder_by_id(conn, sentmail)).id))


_INSERT_DRAFT = (
    f"INSERT INTO messages (folder_id, created_at, filed_at, {', '.join(DRAFT_COLUMNS)})"
    f" VALUES ($1, $2, $3, {placeholders(len(DRAFT_COLUMNS), 4)}) RETURNING id"
)
_INSERT_QUEUED = (
    f"INSERT INTO messages (folder_id, created_at, filed_at, {', '.join(NEW_QUEUED_COLUMNS)})"
    f" VALUES ($1, $2, $3, {placeholders(len(NEW_QUEUED_COLUMNS), 4)}) RETURNING id"
)


async def insert_message(
    conn: Any, folder_id: str, draft: Draft, now: float, queue: QueueRequest | None = None
) -> int:
    """A new message in ``folder_id``, its row, content and recipients: a draft, or with ``queue``
    (``submit_new``) already queued, as ``submit`` would queue it."""
    folder = await folder_by_id(conn, folder_id)
    row = await draft_row(conn, draft)
    if queue is None:
        mid: int = await conn.fetchval(_INSERT_DRAFT, int(folder.id), now, now, *row.values())
    else:
        values = queue.plan_new(row).new_values(row)
        mid = await conn.fetchval(_INSERT_QUEUED, int(folder.id), now, now, *values)
    await insert_content(conn, mid, bytes(draft.content))
    await insert_recipients(conn, mid, draft.recipients)
    return mid


async def insert_content(conn: Any, mid: int, content: bytes) -> None:
    await conn.execute("INSERT INTO contents (message_id, data) VALUES ($1, $2)", mid, content)


_INSERT_RECIPIENTS = (
    f"INSERT INTO recipients ({', '.join(NEW_RECIPIENT_COLUMNS)})"
    f" VALUES ({placeholders(len(NEW_RECIPIENT_COLUMNS))})"
)


async def insert_recipients(conn: Any, mid: int, recipients: Sequence[NewRecipient]) -> None:
    await conn.executemany(_INSERT_RECIPIENTS, new_recipient_values(mid, recipients))


async def state_row(conn: Any, mid: int, columns: str = STATE_COLUMNS, *, for_update: bool = True) -> Any:
    """The message's ``columns`` (by default, what ``MessageState`` reads), its row locked until the
    transaction ends unless ``for_update`` is False; ``NotFound`` if there is no such message."""
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(f"SELECT {columns} FROM messages WHERE id=$1{lock}", mid)
    if row is None:
        raise NotFound(f"no message with id {mid}")
    return row


async def message_state(conn: Any, mid: int) -> MessageState:
    return MessageState.of(await state_row(conn, mid))


async def require_lock(conn: Any, mid: int, owner: str) -> None:
    (await message_state(conn, mid)).require_lock(str(mid), owner)


async def load_message(conn: Any, mid: int, now: float) -> Message:
    message = (await load_messages(conn, [mid], now)).get(mid)
    if message is None:
        raise NotFound(f"no message with id {mid}")
    return message


async def load_messages(conn: Any, ids: Sequence[int], now: float) -> dict[int, Message]:
    """Several messages as ``load_message`` reads each, in two statements; by id (missing ids absent)."""
    found = await conn.fetch(
        f"SELECT {LOADED_COLUMNS}, m.id AS mid FROM messages m JOIN contents c ON c.message_id = m.id"
        " WHERE m.id = ANY($1::bigint[])",
        ids,
    )
    recipients: dict[int, list[Any]] = {}
    for r in await conn.fetch(
        f"SELECT {RECIPIENT_COLUMNS}, message_id FROM recipients WHERE message_id = ANY($1::bigint[])"
        " ORDER BY message_id, idx",
        ids,
    ):
        recipients.setdefault(r["message_id"], []).append(r)
    return {
        row["mid"]: message_from_row(
            row, tuple(recipient_from_row(r) for r in recipients.get(row["mid"], ())), now
        )
        for row in found
    }
