"""Folders and messages of the SQLite store, and how long a folder keeps them (retention)."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

from spoolerd.errors import NoAccess, Submitted
from spoolerd.message import (
    Access,
    Draft,
    Folder,
    FolderRole,
    Message,
    MessageSummary,
    SubmitFlag,
    check_time,
    check_wire_text,
    validate_draft,
)
from stores.common.rows import DRAFT_COLUMNS, SUMMARY_COLUMNS, summary_from_row
from stores.common.rules import PURGE_BATCH, int_id

from . import tables
from .core import SqliteCore

__all__ = ["SqliteMessages"]

_SAVE_DRAFT = f"UPDATE messages SET {', '.join(f'{c}=?' for c in DRAFT_COLUMNS)} WHERE id=?"


class SqliteMessages(SqliteCore):
    # ------------------------------------------------------------------ folders

    async def folders(self) -> list[Folder]:
        return await self._readers.run(tables.all_folders)

    async def folder(self, role: FolderRole) -> Folder:
        role = FolderRole(role)
        return await self._readers.run(lambda c: tables.folder_by_role(c, role))

    async def create_folder(self, name: str, parent_id: str | None = None) -> Folder:
        check_wire_text("folder name", name, allow_empty=False)

        def tx(conn: sqlite3.Connection) -> Folder:
            parent = (
                tables.folder_by_role(conn, FolderRole.ROOT)
                if parent_id is None
                else tables.folder_by_id(conn, parent_id)
            )
            cur = conn.execute(
                "INSERT INTO folders (parent_id, name, role) VALUES (?, ?, NULL)", (int(parent.id), name)
            )
            return Folder(str(cur.lastrowid), name, None, parent.id)

        return await self._writer.run(tx)

    # ------------------------------------------------------------------ messages

    async def create_message(self, folder_id: str, draft: Draft) -> str:
        validate_draft(draft)
        new = tables.NewMessage.of(folder_id, draft, self._clock())
        return str(await self._writer.run(lambda conn: tables.insert_message(conn, new)))

    async def save(self, message_id: str, draft: Draft) -> None:
        validate_draft(draft)
        mid = int_id(message_id)
        now = self._clock()

        def tx(conn: sqlite3.Connection) -> None:
            tables.message_state(conn, mid).refuse_if_queued(now, "saved")
            conn.execute(_SAVE_DRAFT, (*tables.draft_row(conn, draft).values(), mid))
            conn.execute("UPDATE contents SET data=? WHERE message_id=?", (bytes(draft.content), mid))
            conn.execute("DELETE FROM recipients WHERE message_id=?", (mid,))
            tables.insert_recipients(conn, mid, draft.recipients)

        await self._writer.run(tx)

    async def open(self, message_id: str, access: Access = Access.READ) -> Message:
        mid = int_id(message_id)
        access = Access(access)
        now = self._clock()

        def read(conn: sqlite3.Connection) -> Message:
            message = tables.load_message(conn, mid, now)
            if SubmitFlag.LOCKED in message.submit_flags:
                raise NoAccess(f"message {message_id} is locked by the spooler")
            if message.queued and access is Access.MODIFY:
                raise Submitted(f"message {message_id} is submitted; it can only be read or aborted")
            return replace(message, writable=not message.queued and access is not Access.READ)

        return await self._readers.run(read)

    async def list_messages(self, folder_id: str) -> list[MessageSummary]:
        def read(conn: sqlite3.Connection) -> list[MessageSummary]:
            folder = tables.folder_by_id(conn, folder_id)
            rows = conn.execute(
                f"SELECT {SUMMARY_COLUMNS} FROM messages WHERE folder_id=? ORDER BY id", (int(folder.id),)
            )
            return [summary_from_row(r) for r in rows]

        return await self._readers.run(read)

    async def move(self, message_id: str, folder_id: str) -> None:
        mid = int_id(message_id)
        now = self._clock()

        def tx(conn: sqlite3.Connection) -> None:
            tables.message_state(conn, mid).refuse_if_queued(now, "moved")
            folder = tables.folder_by_id(conn, folder_id)
            conn.execute("UPDATE messages SET folder_id=?, filed_at=? WHERE id=?", (int(folder.id), now, mid))

        await self._writer.run(tx)

    async def delete(self, message_id: str) -> None:
        mid = int_id(message_id)
        now = self._clock()

        def tx(conn: sqlite3.Connection) -> None:
            tables.message_state(conn, mid).refuse_if_queued(now, "deleted")
            conn.execute("DELETE FROM messages WHERE id=?", (mid,))

        await self._writer.run(tx)

    # ------------------------------------------------------------------ retention

    async def oldest(self, folder_id: str) -> float | None:
        def read(conn: sqlite3.Connection) -> float | None:
            folder = tables.folder_by_id(conn, folder_id)
            (filed,) = conn.execute(
                "SELECT MIN(filed_at) FROM messages WHERE folder_id=? AND queued=0", (int(folder.id),)
            ).fetchone()
            return None if filed is None else float(filed)

        return await self._readers.run(read)

    async def purge(self, folder_id: str, older_than: float) -> int:
        check_time("older_than", older_than)

        def batch(conn: sqlite3.Connection) -> int:
            folder = tables.folder_by_id(conn, folder_id)
            deleted = conn.execute(
                "DELETE FROM messages WHERE id IN (SELECT id FROM messages"
                " WHERE folder_id=? AND queued=0 AND filed_at < ? ORDER BY filed_at LIMIT ?)",
                (int(folder.id), older_than, PURGE_BATCH),
            ).rowcount
            tables.release_free_pages(conn)
            return int(deleted)

        total = 0
        while (deleted := await self._writer.run(batch)) > 0:
            total += deleted
            if deleted < PURGE_BATCH:
                break
        if total:  # the file shrinks once the WAL is written back; the WAL itself goes back to empty
            await self._writer.run(tables.checkpoint, read_only=True)
        return total
