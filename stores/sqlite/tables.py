"""Tables of the SQLite store: lookups, checks and the mapping between tables and message values.

Every function takes the connection of the transaction it runs in (the writer's or a reader's), so the
store's methods can combine them into one atomic step.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from spoolerd.errors import LockLost, NoAccess, NotFound, NotInQueue, Submitted
from spoolerd.message import (
    Draft,
    Folder,
    FolderRole,
    Message,
    MessageFlag,
    NewRecipient,
    QueueEntry,
    Recipient,
    RecipientKind,
    RecipientState,
    SubmitFlag,
)

BLOB_CHUNK = 1024 * 1024  # contents larger than this are written into their row a chunk at a time


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


MESSAGE_COLUMNS = (
    "m.id, m.folder_id, m.message_class, m.flags, m.submit_flags, m.priority, m.sender, m.subject, m.size,"
    " m.created_at, m.client_submit_time, m.not_before, m.next_attempt, m.sentmail_folder,"
    " m.delete_after_submit, m.ndr_requested, m.dr_requested, m.lock_owner, m.lock_expiry, m.queued,"
    " m.delay_reported, m.held"
)
RECIPIENT_COLUMNS = (
    "idx, address, display_name, address_type, kind, responsibility, state, attempts, next_attempt,"
    " last_code, last_status, last_text, transport"
)
INCREMENTAL_VACUUM = 2  # PRAGMA auto_vacuum's value for INCREMENTAL
QUEUE_COLUMNS = (
    "id, client_submit_time, due_at, flags, submit_flags, priority, sender, subject, size, lock_owner,"
    " lock_expiry, not_before, held"
)


def int_id(message_id: str, what: str = "message") -> int:
    try:
        value = int(message_id)
    except (TypeError, ValueError):
        raise NotFound(f"no {what} with id {message_id!r}") from None
    if value <= 0:
        raise NotFound(f"no {what} with id {message_id!r}")
    return value


def live(lock_owner: str | None, lock_expiry: float | None, now: float) -> bool:
    return lock_owner is not None and lock_expiry is not None and lock_expiry > now


def effective_submit_flags(
    stored: int, lock_owner: str | None, lock_expiry: float | None, now: float
) -> SubmitFlag:
    flags = SubmitFlag(stored) & ~SubmitFlag.LOCKED
    return flags | SubmitFlag.LOCKED if live(lock_owner, lock_expiry, now) else flags


def due(*times: float | None) -> float:
    return max(t for t in times if t is not None)


def fetch_all(conn: sqlite3.Connection, *, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(sql, args).fetchall()


def data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def folder_from_row(row: tuple[Any, ...]) -> Folder:
    fid, name, role, parent = row
    return Folder(str(fid), name, FolderRole(role) if role else None, None if parent is None else str(parent))


def all_folders(conn: sqlite3.Connection) -> list[Folder]:
    rows = conn.execute("SELECT id, name, role, parent_id FROM folders ORDER BY id").fetchall()
    return [folder_from_row(r) for r in rows]


def folder_by_role(conn: sqlite3.Connection, role: FolderRole) -> Folder:
    row = conn.execute("SELECT id, name, role, parent_id FROM folders WHERE role=?", (role.value,)).fetchone()
    if row is None:
        raise NotFound(f"the store has no {role.value} folder")
    return folder_from_row(row)


def folder_by_id(conn: sqlite3.Connection, folder_id: str) -> Folder:
    fid = int_id(folder_id, "folder")
    row = conn.execute("SELECT id, name, role, parent_id FROM folders WHERE id=?", (fid,)).fetchone()
    if row is None:
        raise NotFound(f"no folder with id {folder_id!r}")
    return folder_from_row(row)


def folder_exists(conn: sqlite3.Connection, fid: int) -> bool:
    return conn.execute("SELECT 1 FROM folders WHERE id=?", (fid,)).fetchone() is not None


def receive_table(conn: sqlite3.Connection) -> dict[str, str]:
    return {
        cls: str(fid) for cls, fid in conn.execute("SELECT message_class, folder_id FROM receive_folders")
    }


def draft_values(conn: sqlite3.Connection, draft: Draft, now: float) -> tuple[Any, ...]:
    sentmail = None if draft.sentmail_folder is None else int(folder_by_id(conn, draft.sentmail_folder).id)
    return (
        draft.message_class, int(draft.flags & ~MessageFlag.SUBMIT), draft.priority, draft.sender,
        draft.subject, len(draft.content), now, draft.not_before, sentmail, int(draft.delete_after_submit),
        int(draft.ndr_requested), int(draft.dr_requested),
    )  # fmt: skip


def insert_recipients(conn: sqlite3.Connection, mid: int, recipients: Sequence[NewRecipient]) -> None:
    conn.executemany(
        "INSERT INTO recipients (message_id, idx, address, display_name, address_type, kind)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (mid, i, r.address, r.display_name, r.resolved_type, RecipientKind(r.kind).value)
            for i, r in enumerate(recipients)
        ],
    )


def state_row(conn: sqlite3.Connection, mid: int) -> tuple[int, str | None, float | None]:
    row = conn.execute("SELECT queued, lock_owner, lock_expiry FROM messages WHERE id=?", (mid,)).fetchone()
    if row is None:
        raise NotFound(f"no message with id {mid}")
    return row  # type: ignore[no-any-return]


def refuse_if_queued(row: tuple[int, str | None, float | None], now: float, verb: str) -> None:
    queued, lock_owner, lock_expiry = row
    if live(lock_owner, lock_expiry, now):
        raise NoAccess("the message is locked by the spooler")
    if queued:
        raise Submitted(f"the message is submitted and cannot be {verb}; abort the submission first")


def require_lock(conn: sqlite3.Connection, mid: int, owner: str) -> None:
    queued, lock_owner, _expiry = state_row(conn, mid)
    if not queued:
        raise NotInQueue(f"message {mid} is not in the outgoing queue")
    if lock_owner != owner:
        # An expired lease still held by the same owner is kept: nobody else has taken it over.
        raise LockLost(f"{owner} does not hold the lock on message {mid}")


def queue_entry_from_row(r: tuple[Any, ...], now: float) -> QueueEntry:
    """A row selected with QUEUE_COLUMNS."""
    return QueueEntry(
        id=str(r[0]),
        client_submit_time=r[1],
        due_at=r[2],
        flags=MessageFlag(r[3]),
        submit_flags=effective_submit_flags(r[4], r[9], r[10], now),
        priority=r[5],
        sender=r[6],
        subject=r[7],
        size=r[8],
        lock_owner=r[9] if live(r[9], r[10], now) else None,
        lock_expiry=r[10] if live(r[9], r[10], now) else None,
        not_before=r[11],
        held=bool(r[12]),
    )


def recipient_from_row(r: tuple[Any, ...]) -> Recipient:
    return Recipient(
        index=r[0],
        address=r[1],
        display_name=r[2],
        address_type=r[3],
        kind=RecipientKind(r[4]),
        responsibility=bool(r[5]),
        state=RecipientState(r[6]),
        attempts=r[7],
        next_attempt=r[8],
        last_code=r[9],
        last_status=r[10],
        last_text=r[11],
        transport=r[12],
    )


def load_message(conn: sqlite3.Connection, mid: int, now: float) -> Message:
    row = conn.execute(
        f"SELECT {MESSAGE_COLUMNS}, c.data FROM messages m JOIN contents c ON c.message_id = m.id"
        " WHERE m.id=?",
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


def message_from_row(row: Sequence[Any], recipients: tuple[Recipient, ...], now: float) -> Message:
    """A row selected with MESSAGE_COLUMNS followed by the content, and its recipients."""
    (
        mid, folder_id, message_class, flags, submit_flags, priority, sender, subject, size, created_at,
        client_submit_time, not_before, next_attempt, sentmail, delete_after, ndr, dr, lock_owner,
        lock_expiry, _queued, delay_reported, held, content,
    ) = row  # fmt: skip
    return Message(
        id=str(mid),
        folder_id=str(folder_id),
        message_class=message_class,
        flags=MessageFlag(flags),
        submit_flags=effective_submit_flags(submit_flags, lock_owner, lock_expiry, now),
        priority=priority,
        sender=sender,
        subject=subject,
        size=size,
        content=bytes(content),
        recipients=recipients,
        created_at=created_at,
        client_submit_time=client_submit_time,
        not_before=not_before,
        next_attempt=next_attempt,
        sentmail_folder=None if sentmail is None else str(sentmail),
        delete_after_submit=bool(delete_after),
        ndr_requested=bool(ndr),
        dr_requested=bool(dr),
        lock_owner=lock_owner if live(lock_owner, lock_expiry, now) else None,
        lock_expiry=lock_expiry if live(lock_owner, lock_expiry, now) else None,
        delay_reported=bool(delay_reported),
        held=bool(held),
    )


def replace_writable(message: Message, writable: bool) -> Message:
    return replace(message, writable=writable)


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
