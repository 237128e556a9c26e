"""Inbound mail in the SQLite store: delivery into the receive folder chosen by message class, the
receive-folder table, and the transports' memory (``StateChange``) kept with what they delivered."""

from __future__ import annotations

import sqlite3
from typing import TypeVar

from spoolerd.events import NewMail
from spoolerd.message import (
    Delivery,
    Folder,
    FolderRole,
    InboundMessage,
    StateChange,
    check_class,
    check_wire_text,
    validate_state_change,
)
from spoolerd.message_class import choose_receive_folder
from spoolerd.shared_state import Change
from stores.common.rows import ARRIVAL_COLUMNS, Arrival

from . import tables
from .core import SqliteCore

__all__ = ["SqliteInbound"]

T = TypeVar("T")

_INSERT_ARRIVAL = (
    f"INSERT INTO messages (folder_id, {', '.join(ARRIVAL_COLUMNS)})"
    f" VALUES (?, {', '.join('?' * len(ARRIVAL_COLUMNS))})"
)


class SqliteInbound(SqliteCore):
    async def deliver(self, message: InboundMessage, *, state: StateChange | None = None) -> Delivery:
        arrival = Arrival.checked(message, state, self._clock())

        def tx(conn: sqlite3.Connection) -> Delivery:
            inbox = tables.folder_by_role(conn, FolderRole.INBOX)
            folder_id = choose_receive_folder(arrival.message_class, tables.receive_table(conn), inbox.id)
            cur = conn.execute(_INSERT_ARRIVAL, (int(folder_id), *arrival.values()))
            mid = int(cur.lastrowid or 0)
            tables.insert_content(conn, mid, arrival.content)
            if arrival.state is not None:
                _write_state(conn, arrival.state)
            return arrival.delivery(mid, folder_id)

        def announce(d: Delivery) -> None:
            self._hub.publish(NewMail(self.name, d.message_id, d.folder_id, d.message_class, d.flags))

        return await self._writer.run(tx, on_commit=announce)

    # ------------------------------------------------------------------ a transport's memory

    async def transport_state(self, transport: str, prefix: str = "") -> dict[str, bytes]:
        check_wire_text("transport", transport, allow_empty=False)

        def read(conn: sqlite3.Connection) -> dict[str, bytes]:
            rows = conn.execute(
                "SELECT key, value FROM transport_state WHERE transport=? AND substr(key, 1, length(?)) = ?",
                (transport, prefix, prefix),
            )
            return {r["key"]: bytes(r["value"]) for r in rows}

        return await self._readers.run(read)

    async def set_transport_state(self, change: StateChange) -> None:
        validate_state_change(change)
        await self._writer.run(lambda conn: _write_state(conn, change))

    async def update_transport_state(self, transport: str, key: str, change: Change[T]) -> T:
        """``SharedState``: the writer's transaction holds SQLite's write lock (and the store's
        ``-write.lock`` across processes) from the read to the commit."""
        validate_state_change(StateChange(transport, {key: None}))

        def tx(conn: sqlite3.Connection) -> T:
            row = conn.execute(
                "SELECT value FROM transport_state WHERE transport=? AND key=?", (transport, key)
            ).fetchone()
            value, answer = change(None if row is None else bytes(row["value"]))
            if value is not None:
                _write_state(conn, StateChange(transport, {key: value}))
            return answer

        return await self._writer.run(tx)

    # ------------------------------------------------------------------ receive folders

    async def receive_folder(self, message_class: str) -> Folder:
        check_class(message_class)

        def read(conn: sqlite3.Connection) -> Folder:
            inbox = tables.folder_by_role(conn, FolderRole.INBOX)
            return tables.folder_by_id(
                conn, choose_receive_folder(message_class, tables.receive_table(conn), inbox.id)
            )

        return await self._readers.run(read)

    async def set_receive_folder(self, message_class: str, folder_id: str | None) -> None:
        check_class(message_class)

        def tx(conn: sqlite3.Connection) -> None:
            key = message_class.casefold()
            if folder_id is None:
                conn.execute("DELETE FROM receive_folders WHERE message_class=?", (key,))
                return
            folder = tables.folder_by_id(conn, folder_id)
            conn.execute(
                "INSERT INTO receive_folders (message_class, folder_id) VALUES (?, ?)"
                " ON CONFLICT (message_class) DO UPDATE SET folder_id=excluded.folder_id",
                (key, int(folder.id)),
            )

        await self._writer.run(tx)

    async def receive_folders(self) -> dict[str, str]:
        return await self._readers.run(tables.receive_table)


def _write_state(conn: sqlite3.Connection, change: StateChange) -> None:
    for key, value in change.changes.items():
        if value is None:
            conn.execute("DELETE FROM transport_state WHERE transport=? AND key=?", (change.transport, key))
        else:
            conn.execute(
                "INSERT INTO transport_state (transport, key, value) VALUES (?, ?, ?)"
                " ON CONFLICT (transport, key) DO UPDATE SET value=excluded.value",
                (change.transport, key, value),
            )
