"""Folders and messages of the PostgreSQL store, and how long a folder keeps them (retention)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

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

from . import rows
from .core import PostgresCore
from .db import affected

__all__ = ["PostgresMessages"]

_SAVE_DRAFT = (
    f"UPDATE messages SET {', '.join(f'{c}=${n}' for n, c in enumerate(DRAFT_COLUMNS, 1))}"
    f" WHERE id=${len(DRAFT_COLUMNS) + 1}"
)


class PostgresMessages(PostgresCore):
    # ------------------------------------------------------------------ folders

    async def folders(self) -> list[Folder]:
        return await self._database().run(rows.all_folders, read_only=True)

    async def folder(self, role: FolderRole) -> Folder:
        role = FolderRole(role)

        async def read(conn: Any) -> Folder:
            return await rows.folder_by_role(conn, role)

        return await self._database().run(read, read_only=True)

    async def create_folder(self, name: str, parent_id: str | None = None) -> Folder:
        check_wire_text("folder name", name, allow_empty=False)

        async def tx(conn: Any) -> Folder:
            parent = await (
                rows.folder_by_role(conn, FolderRole.ROOT)
                if parent_id is None
                else rows.folder_by_id(conn, parent_id)
            )
            fid = await conn.fetchval(
                "INSERT INTO folders (parent_id, name, role) VALUES ($1, $2, NULL) RETURNING id",
                int(parent.id),
                name,
            )
            return Folder(str(fid), name, None, parent.id)

        return await self._database().run(tx)

    # ------------------------------------------------------------------ messages

    async def create_message(self, folder_id: str, draft: Draft) -> str:
        validate_draft(draft)
        now = self._clock()

        async def tx(conn: Any) -> str:
            return str(await rows.insert_message(conn, folder_id, draft, now))

        return await self._database().run(tx)

    async def save(self, message_id: str, draft: Draft) -> None:
        validate_draft(draft)
        mid = int_id(message_id)
        now = self._clock()

        async def tx(conn: Any) -> None:
            (await rows.message_state(conn, mid)).refuse_if_queued(now, "saved")
            await conn.execute(_SAVE_DRAFT, *(await rows.draft_row(conn, draft)).values(), mid)
            await conn.execute("UPDATE contents SET data=$1 WHERE message_id=$2", bytes(draft.content), mid)
            await conn.execute("DELETE FROM recipients WHERE message_id=$1", mid)
            await rows.insert_recipients(conn, mid, draft.recipients)

        await self._database().run(tx)

    async def open(self, message_id: str, access: Access = Access.READ) -> Message:
        mid = int_id(message_id)
        access = Access(access)
        now = self._clock()

        async def read(conn: Any) -> Message:
            message = await rows.load_message(conn, mid, now)
            if SubmitFlag.LOCKED in message.submit_flags:
                raise NoAccess(f"message {message_id} is locked by the spooler")
            if message.queued and access is Access.MODIFY:
                raise Submitted(f"message {message_id} is submitted; it can only be read or aborted")
            return replace(message, writable=not message.queued and access is not Access.READ)

        return await self._database().run(read, read_only=True)

    async def list_messages(self, folder_id: str) -> list[MessageSummary]:
        async def read(conn: Any) -> list[MessageSummary]:
            folder = await rows.folder_by_id(conn, folder_id)
            found = await conn.fetch(
                f"SELECT {SUMMARY_COLUMNS} FROM messages WHERE folder_id=$1 ORDER BY id", int(folder.id)
            )
            return [summary_from_row(r) for r in found]

        return await self._database().run(read, read_only=True)

    async def move(self, message_id: str, folder_id: str) -> None:
        mid = int_id(message_id)
        now = self._clock()

        async def tx(conn: Any) -> None:
            (await rows.message_state(conn, mid)).refuse_if_queued(now, "moved")
            folder = await rows.folder_by_id(conn, folder_id)
            await conn.execute(
                "UPDATE messages SET folder_id=$1, filed_at=$2 WHERE id=$3", int(folder.id), now, mid
            )

        await self._database().run(tx)

    async def delete(self, message_id: str) -> None:
        mid = int_id(message_id)
        now = self._clock()

        async def tx(conn: Any) -> None:
            (await rows.message_state(conn, mid)).refuse_if_queued(now, "deleted")
            await conn.execute("DELETE FROM messages WHERE id=$1", mid)

        await self._database().run(tx)

    # ------------------------------------------------------------------ retention

    async def oldest(self, folder_id: str) -> float | None:
        async def read(conn: Any) -> float | None:
            folder = await rows.folder_by_id(conn, folder_id)
            filed = await conn.fetchval(
                "SELECT MIN(filed_at) FROM messages WHERE folder_id=$1 AND NOT queued", int(folder.id)
            )
            return None if filed is None else float(filed)

        return await self._database().run(read, read_only=True)

    async def purge(self, folder_id: str, older_than: float) -> int:
        check_time("older_than", older_than)

        async def batch(conn: Any) -> int:
            folder = await rows.folder_by_id(conn, folder_id)
            return affected(
                await conn.execute(
                    "DELETE FROM messages WHERE id IN (SELECT id FROM messages"
                    " WHERE folder_id=$1 AND NOT queued AND filed_at < $2 ORDER BY filed_at LIMIT $3"
                    " FOR UPDATE SKIP LOCKED)",
                    int(folder.id),
                    older_than,
                    PURGE_BATCH,
                )
            )

        total = 0
        while (deleted := await self._database().run(batch)) > 0:
            total += deleted
            if deleted < PURGE_BATCH:
                break
        return total
