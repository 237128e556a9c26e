"""Tables of the SQLite store: lookups and writes shared by its parts, and file-level maintenance.

Every function takes the connection of the transaction it runs in (the writer's or a reader's), so the
store's methods can combine them into one atomic step. The store's connections read rows by column name
(``sqlite3.Row``); what a row means is ``stores.common.rows``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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

BLOB_CHUNK = 1024 * 1024  # contents larger than this are written into their row a chunk at a time
INCREMENTAL_VACUUM = 2  # PRAGMA auto_vacuum's value for INCREMENTAL


def insert_content(conn: sqlite3.Connection, message_id: int, content: bytes) -> None:
    """A message's content. A large one goes in through incremental blob I/O: bound as one value, SQLite
    would copy it twice more (the value, then the record), holding three times its size in memory."""
    if len(content) <= BLOB_CHUNK:
        conn.execute("INSERT INTO contents (message_id, data) VALUES (?, ?)", (message_id, content))
        return
    conn.execute(
        "INSERT INTO contents (message_id, data) VALUES (?, zeroblob(?))", (message_id, len(content))
    )
    view = memoryview(content)
    with conn.blobopen("contents", "data", message_id) as blob:
        for start in range(0, len(view), BLOB_CHUNK):
            blob.write(view[start : start + BLOB_CHUNK])


def fetch_all(conn: sqlite3.Connection, *, sql: str, args: Sequence[Any] | Mapping[str, Any]) -> list[Any]:
    return conn.execute(sql, args).fetchall()


def data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def all_folders(conn: sqlite3.Connection) -> list[Folder]:
    rows = conn.execute(f"SELECT {FOLDER_COLUMNS} FROM folders ORDER BY id").fetchall()
    return [folder_from_row(r) for r in rows]


def folder_by_role(conn: sqlite3.Connection, role: FolderRole) -> Folder:
    row = conn.execute(f"SELECT {FOLDER_COLUMNS} FROM folders WHERE role=?", (role.value,)).fetchone()
    if row is None:
        raise NotFound(f"the store has no {role.value} folder")
    return folder_from_row(row)


def folder_by_id(conn: sqlite3.Connection, folder_id: str) -> Folder:
    fid = int_id(folder_id, "folder")
    row = conn.execute(f"SELECT {FOLDER_COLUMNS} FROM folders WHERE id=?", (fid,)).fetchone()
    if row is None:
        raise NotFound(f"no folder with id {folder_id!r}")
    return folder_from_row(row)


def receive_table(conn: sqlite3.Connection) -> dict[str, str]:
    rows = conn.execute("SELECT message_class, folder_id FROM receive_folders")
    return {r["message_class"]: str(r["folder_id"]) for r in rows}


def draft_row(conn: sqlite3.Connection, draft: Draft) -> DraftRow:
    """The draft's columns, its sent-mail folder looked up (``NotFound`` if there is no such folder)."""
    sentmail = None if draft.sentmail_folder is None else int(folder_by_id(conn, draft.sentmail_folder).id)
    return DraftRow.of(draft, sentmail)


_INSERT_DRAFT = (
    f"INSERT INTO messages (folder_id, created_at, filed_at, {', '.join(DRAFT_COLUMNS)})"
    f" VALUES (?, ?, ?, {', '.join('?' * len(DRAFT_COLUMNS))})"
)
_INSERT_QUEUED = (
    f"INSERT INTO messages (folder_id, created_at, filed_at, {', '.join(NEW_QUEUED_COLUMNS)})"
    f" VALUES (?, ?, ?, {', '.join('?' * len(NEW_QUEUED_COLUMNS))})"
)


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A new message's rows, worked out before the write transaction (the scan of its content for
    ``lines`` included), which then only checks its folders and writes: the transaction, and the write
    lock other processes wait for, lasts no longer than the writing."""

    folder: int
    sentmail_folder: int | None
    insert: str  # the row's statement: a draft's, or a message queued at once
    values: tuple[Any, ...]  # the row's columns after its folder
    content: bytes
    recipients: Sequence[NewRecipient]

    @classmethod
    def of(cls, folder_id: str, draft: Draft, now: float, queue: QueueRequest | None = None) -> NewMessage:
        """A draft in ``folder_id``, or with ``queue`` (``submit_new``) queued as ``submit`` would."""
        sentmail = None if draft.sentmail_folder is None else int_id(draft.sentmail_folder, "folder")
        row = DraftRow.of(draft, sentmail)
        columns = row.values() if queue is None else queue.plan_new(row).new_values(row)
        return cls(
            int_id(folder_id, "folder"),
            sentmail,
            _INSERT_DRAFT if queue is None else _INSERT_QUEUED,
            (now, now, *columns),
            bytes(draft.content),
            draft.recipients,
        )


def insert_message(conn: sqlite3.Connection, new: NewMessage) -> int:
    """The new message's row, content and recipients, in its folder (``NotFound`` if its folder or its
    sent-mail folder is not there)."""
    wanted = {new.folder} if new.sentmail_folder is None else {new.folder, new.sentmail_folder}
    (found,) = conn.execute(
        f"SELECT COUNT(*) FROM folders WHERE id IN ({', '.join('?' * len(wanted))})", tuple(wanted)
    ).fetchone()
    if found < len(wanted):  # which one: the message's own folder first
        for fid in (new.folder, new.sentmail_folder or new.folder):
            folder_by_id(conn, str(fid))
    mid = int(conn.execute(new.insert, (new.folder, *new.values)).lastrowid or 0)
    insert_content(conn, mid, new.content)
    insert_recipients(conn, mid, new.recipients)
    return mid


_INSERT_RECIPIENTS = (
    f"INSERT INTO recipients ({', '.join(NEW_RECIPIENT_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(NEW_RECIPIENT_COLUMNS))})"
)


def insert_recipients(conn: sqlite3.Connection, mid: int, recipients: Sequence[NewRecipient]) -> None:
    conn.executemany(_INSERT_RECIPIENTS, new_recipient_values(mid, recipients))


def state_row(conn: sqlite3.Connection, mid: int, columns: str = STATE_COLUMNS) -> Any:
    """The message's ``columns`` (by default, what ``MessageState`` reads); ``NotFound`` if it is gone."""
    row = conn.execute(f"SELECT {columns} FROM messages WHERE id=?", (mid,)).fetchone()
    if row is None:
        raise NotFound(f"no message with id {mid}")
    return row


def message_state(conn: sqlite3.Connection, mid: int) -> MessageState:
    return MessageState.of(state_row(conn, mid))


def require_lock(conn: sqlite3.Connection, mid: int, owner: str) -> None:
    message_state(conn, mid).require_lock(str(mid), owner)


def load_message(conn: sqlite3.Connection, mid: int, now: float) -> Message:
    row = conn.execute(
        f"SELECT {LOADED_COLUMNS} FROM messages m JOIN contents c ON c.message_id = m.id WHERE m.id=?",
        (mid,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no message with id {mid}")
    recipients = tuple(
        recipient_from_row(r)
        for r in conn.execute(
            f"SELECT {RECIPIENT_COLUMNS} FROM recipients WHERE message_id=? ORDER BY idx", (mid,)
        )
    )
    return message_from_row(row, recipients, now)


def release_free_pages(conn: sqlite3.Connection) -> int:
    """Give the pages deleted rows left behind back to the file system (in the caller's transaction;
    the file shrinks at the next checkpoint). Python's sqlite3 steps ``incremental_vacuum`` once per
    call, and each step frees one page, hence the loop. Returns the pages freed."""
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != INCREMENTAL_VACUUM:
        return 0
    (free,) = conn.execute("PRAGMA freelist_count").fetchone()
    for _ in range(free):
        conn.execute("PRAGMA incremental_vacuum")
    return int(free)


def enable_incremental_vacuum(conn: sqlite3.Connection) -> bool:
    """Rebuild a database made before spoolerd set ``auto_vacuum`` at creation (one VACUUM, outside any
    transaction), so purges can shrink it from then on. True if it was rebuilt."""
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == INCREMENTAL_VACUUM:
        return False
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("VACUUM")
    return True


def checkpoint(conn: sqlite3.Connection) -> None:
    """Write the WAL back into the database and empty it (outside any transaction): after a purge,
    this is when the database file and the WAL really shrink. Busy readers only postpone it."""
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
