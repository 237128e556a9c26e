"""Inbound mail in the PostgreSQL store: delivery into the receive folder chosen by message class, the
receive-folder table, and the transports' memory (``StateChange``) kept with what they delivered."""

from __future__ import annotations

from typing import Any, TypeVar

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

from . import rows
from .core import PostgresCore

__all__ = ["PostgresInbound"]

T = TypeVar("T")

_STATE_LOCKS = 0x5370_5354  # pg_advisory_xact_lock class of the keys of transport_state (``SharedState``)

_INSERT_ARRIVAL = (
    f"INSERT INTO messages (folder_id, {', '.join(ARRIVAL_COLUMNS)})"
    f" VALUES ($1, {rows.placeholders(len(ARRIVAL_COLUMNS), 2)}) RETURNING id"
)


class PostgresInbound(PostgresCore):
    async def deliver(self, message: InboundMessage, *, state: StateChange | None = None) -> Delivery:
        arrival = Arrival.checked(message, state, self._clock())

        async def tx(conn: Any) -> Delivery:
            inbox = await rows.folder_by_role(conn, FolderRole.INBOX)
            folder_id = choose_receive_folder(arrival.message_class, await rows.receive_table(conn), inbox.id)
            mid = await conn.fetchval(_INSERT_ARRIVAL, int(folder_id), *arrival.values())
            await rows.insert_content(conn, mid, arrival.content)
            if arrival.state is not None:
                await _write_state(conn, arrival.state)
            return arrival.delivery(mid, folder_id)

        d: Delivery = await self._database().run(tx, notify=True)
        self._hub.publish(NewMail(self.name, d.message_id, d.folder_id, d.message_class, d.flags))
        return d

    # ------------------------------------------------------------------ a transport's memory

    async def transport_state(self, transport: str, prefix: str = "") -> dict[str, bytes]:
        check_wire_text("transport", transport, allow_empty=False)

        async def read(conn: Any) -> dict[str, bytes]:
            found = await conn.fetch(
                "SELECT key, value FROM transport_state WHERE transport=$1 AND starts_with(key, $2)",
                transport,
                prefix,
            )
            return {r["key"]: bytes(r["value"]) for r in found}

        return await self._database().run(read, read_only=True)

    async def set_transport_state(self, change: StateChange) -> None:
        validate_state_change(change)

        async def tx(conn: Any) -> None:
            await _write_state(conn, change)

        await self._database().run(tx)

    async def update_transport_state(self, transport: str, key: str, change: Change[T]) -> T:
        """``SharedState``: a transaction-scoped advisory lock on the key (its hash, in a class of
        locks of its own) keeps every other daemon's update of it out until the commit."""
        validate_state_change(StateChange(transport, {key: None}))

        async def tx(conn: Any) -> T:
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))", _STATE_LOCKS, f"{transport} {key}"
            )
            found = await conn.fetchval(
                "SELECT value FROM transport_state WHERE transport=$1 AND key=$2", transport, key
            )
            value, answer = change(None if found is None else bytes(found))
            if value is not None:
                await _write_state(conn, StateChange(transport, {key: value}))
            return answer

        # each statement sees what committed before it (the lock's holder's write included), whatever
        # the database's default isolation: under REPEATABLE READ the read would predate the lock
        return await self._database().run(tx, isolation="read_committed")

    # ------------------------------------------------------------------ receive folders

    async def receive_folder(self, message_class: str) -> Folder:
        check_class(message_class)

        async def read(conn: Any) -> Folder:
            inbox = await rows.folder_by_role(conn, FolderRole.INBOX)
            chosen = choose_receive_folder(message_class, await rows.receive_table(conn), inbox.id)
            return await rows.folder_by_id(conn, chosen)

        return await self._database().run(read, read_only=True)

    async def set_receive_folder(self, message_class: str, folder_id: str | None) -> None:
        check_class(message_class)

        async def tx(conn: Any) -> None:
            key = message_class.casefold()
            if folder_id is None:
                await conn.execute("DELETE FROM receive_folders WHERE message_class=$1", key)
                return
            folder = await rows.folder_by_id(conn, folder_id)
            await conn.execute(
                "INSERT INTO receive_folders (message_class, folder_id) VALUES ($1, $2)"
                " ON CONFLICT (message_class) DO UPDATE SET folder_id=excluded.folder_id",
                key,
                int(folder.id),
            )

        await self._database().run(tx)

    async def receive_folders(self) -> dict[str, str]:
        return await self._database().run(rows.receive_table, read_only=True)


async def _write_state(conn: Any, change: StateChange) -> None:
    for key, value in change.changes.items():
        if value is None:
            await conn.execute(
                "DELETE FROM transport_state WHERE transport=$1 AND key=$2", change.transport, key
            )
        else:
            await conn.execute(
                "INSERT INTO transport_state (transport, key, value) VALUES ($1, $2, $3)"
                " ON CONFLICT (transport, key) DO UPDATE SET value=excluded.value",
                change.transport,
                key,
                value,
            )
