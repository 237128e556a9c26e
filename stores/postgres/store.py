"""A message store in PostgreSQL, shared by every daemon pointed at the same database and schema.

Each method is one transaction on a pooled connection and returns only after it committed. A message's
lease is its row's ``lock_owner`` / ``lock_expiry``: the row is locked ``FOR UPDATE`` while a transaction
decides, and ``lock`` uses ``SKIP LOCKED`` so a daemon never waits for another that is claiming the same
message: it is told ``NoAccess`` at once and moves on. Transactions that change the queue or file new mail
NOTIFY the schema's channel once; the other daemons' listeners turn that into a ``QueueChanged`` event.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel

from spoolerd.errors import (
    InvalidArgument,
    NoAccess,
    NoRecipients,
    NoSupport,
    NotInQueue,
    StoreUnavailable,
    Submitted,
    UnableToAbort,
)
from spoolerd.events import EventHub, NewMail, QueueChanged, StoreEvent, Subscription
from spoolerd.message import (
    Access,
    Delivery,
    Draft,
    Folder,
    FolderRole,
    InboundMessage,
    Message,
    MessageFlag,
    MessageSummary,
    NewRecipient,
    QueueEntry,
    RecipientState,
    RecipientUpdate,
    StateChange,
    SubmitFlag,
    check_class,
    check_time,
    check_wire_text,
    validate_draft,
    validate_inbound,
    validate_state_change,
)
from spoolerd.message_class import choose_receive_folder, inbound_class, outbound_class
from spoolerd.store import QueuedRecipients, StoreContext
from stores.sqlite.store import PURGE_BATCH, check_updates
from stores.sqlite.tables import due, int_id, live, queue_entry_from_row, refuse_if_queued, replace_writable

from . import rows
from .db import Database, affected
from .settings import PostgresSettings, read_password
from .watch import Listener

__all__ = ["PostgresStore"]

_NOT_FINAL = "state NOT IN ('delivered', 'failed')"


class PostgresStore:
    """A ``MessageStore`` kept in one schema of a PostgreSQL database."""

    Settings: ClassVar[type[BaseModel]] = PostgresSettings
    can_queue: ClassVar[bool] = True

    def __init__(self, settings: PostgresSettings, context: StoreContext) -> None:
        self.name = context.name
        self._settings = settings
        self._state_dir = context.state_dir
        self._clock = context.clock
        self._hub: EventHub[StoreEvent] = EventHub()
        self._db: Database | None = None
        self._listener: Listener | None = None

    # ------------------------------------------------------------------ life cycle

    def check(self) -> None:
        """Before start: the password file, if one is named, can be read."""
        read_password(self._settings, self._state_dir)

    async def start(self) -> None:
        db = Database(self._settings, read_password(self._settings, self._state_dir))
        await db.open()
        self._db = db
        self._listener = Listener(db.connect, db.channel, db.instance, self._external, store=self.name)
        try:
            await self._listener.start()
        except BaseException:
            self._listener = None
            await db.close()
            self._db = None
            raise

    async def stop(self) -> None:
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        if self._db is not None:
            await self._db.close()
            self._db = None
        self._hub.close()

    @property
    def commits(self) -> int:
        """Write transactions committed so far."""
        return 0 if self._db is None else self._db.transactions

    def _database(self) -> Database:
        if self._db is None:
            raise StoreUnavailable(f"store {self.name} is not started")
        return self._db

    # ------------------------------------------------------------------ events

    def subscribe(
        self, limit: float = math.inf, accept: Callable[[StoreEvent], bool] | None = None
    ) -> Subscription[StoreEvent]:
        return self._hub.subscribe(limit, accept)

    def _external(self) -> None:
        self._hub.publish(QueueChanged(self.name, "external"))

    async def _changed(self, body: Any, reason: str, message_id: str | None) -> Any:
        """Run a transaction that changes the queue, wake the other daemons, then tell our subscribers."""
        result = await self._database().run(body, notify=True)
        self._hub.publish(QueueChanged(self.name, reason, message_id))
        return result

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
            return str(await _insert_message(conn, folder_id, draft, now))

        return await self._database().run(tx)

    async def save(self, message_id: str, draft: Draft) -> None:
        validate_draft(draft)
        mid = int_id(message_id)
        now = self._clock()

        async def tx(conn: Any) -> None:
            refuse_if_queued(await rows.state_row(conn, mid), now, "saved")
            values = await rows.draft_values(conn, draft, now)
            await conn.execute(
                "UPDATE messages SET message_class=$1, flags=$2, priority=$3, sender=$4, subject=$5, size=$6,"
                " not_before=$7, sentmail_folder=$8, delete_after_submit=$9, ndr_requested=$10,"
                " dr_requested=$11 WHERE id=$12",
                *values[:6],
                *values[7:],
                mid,
            )
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
            return replace_writable(message, not message.queued and access is not Access.READ)

        return await self._database().run(read, read_only=True)

    async def list_messages(self, folder_id: str) -> list[MessageSummary]:
        async def read(conn: Any) -> list[MessageSummary]:
            folder = await rows.folder_by_id(conn, folder_id)
            found = await conn.fetch(
                "SELECT id, folder_id, message_class, flags, sender, subject, size,"
                " COALESCE(client_submit_time, created_at) FROM messages WHERE folder_id=$1 ORDER BY id",
                int(folder.id),
            )
            return [
                MessageSummary(str(r[0]), str(r[1]), r[2], MessageFlag(r[3]), r[4], r[5], r[6], r[7])
                for r in found
            ]

        return await self._database().run(read, read_only=True)

    async def move(self, message_id: str, folder_id: str) -> None:
        mid = int_id(message_id)
        now = self._clock()

        async def tx(conn: Any) -> None:
            refuse_if_queued(await rows.state_row(conn, mid), now, "moved")
            folder = await rows.folder_by_id(conn, folder_id)
            await conn.execute(
                "UPDATE messages SET folder_id=$1, filed_at=$2 WHERE id=$3", int(folder.id), now, mid
            )

        await self._database().run(tx)

    async def delete(self, message_id: str) -> None:
        mid = int_id(message_id)
        now = self._clock()

        async def tx(conn: Any) -> None:
            refuse_if_queued(await rows.state_row(conn, mid), now, "deleted")
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

    # ------------------------------------------------------------------ outgoing queue: client side

    async def submit(
        self, message_id: str, *, preprocess: bool = False, lock: tuple[str, float] | None = None
    ) -> None:
        mid = int_id(message_id)
        queue = _Queueing(self._clock(), preprocess, lock)

        async def tx(conn: Any) -> None:
            refuse_if_queued(await rows.state_row(conn, mid), queue.now, "submitted again")
            if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM recipients WHERE message_id=$1)", mid):
                raise NoRecipients(f"message {message_id} has no recipients")
            await queue(conn, mid)

        await self._changed(tx, "submit", message_id)

    async def submit_new(
        self, folder_id: str, draft: Draft, *, preprocess: bool = False, lock: tuple[str, float] | None = None
    ) -> str:
        validate_draft(draft)
        if not draft.recipients:
            raise NoRecipients("the message has no recipients")
        queue = _Queueing(self._clock(), preprocess, lock)

        async def tx(conn: Any) -> str:
            mid = await _insert_message(conn, folder_id, draft, queue.now)
            await queue(conn, mid)
            return str(mid)

        message_id: str = await self._database().run(tx, notify=True)
        self._hub.publish(QueueChanged(self.name, "submit", message_id))
        return message_id

    async def abort_submit(self, message_id: str) -> None:
        mid = int_id(message_id)
        now = self._clock()

        async def tx(conn: Any) -> None:
            queued, lock_owner, lock_expiry = await rows.state_row(conn, mid)
            if not queued:
                raise NotInQueue(f"message {message_id} is not in the outgoing queue")
            if live(lock_owner, lock_expiry, now):
                raise UnableToAbort(f"message {message_id} is locked by the spooler")
            await conn.execute(
                "UPDATE messages SET flags = flags & $1, submit_flags=0, client_submit_time=NULL,"
                " next_attempt=NULL, due_at=NULL, queued=FALSE, lock_owner=NULL, lock_expiry=NULL"
                " WHERE id=$2",
                ~MessageFlag.SUBMIT & 0xFFFFFFFF,
                mid,
            )

        await self._changed(tx, "abort", message_id)

    async def hold(self, message_id: str, held: bool = True) -> None:
        mid = int_id(message_id)

        async def tx(conn: Any) -> None:
            queued, _owner, _expiry = await rows.state_row(conn, mid)
            if not queued:
                raise NotInQueue(f"message {message_id} is not in the outgoing queue")
            await conn.execute("UPDATE messages SET held=$1 WHERE id=$2", held, mid)

        await self._changed(tx, "hold" if held else "release", message_id)

    # ------------------------------------------------------------------ outgoing queue: spooler side

    async def outgoing_queue(
        self, *, due_at: float | None = None, include_locked: bool = True
    ) -> AsyncIterator[QueueEntry]:
        page = self._settings.queue_page
        after: tuple[float, int] = (-math.inf, 0)
        while True:
            now = self._clock()
            sql = f"SELECT {rows.QUEUE_COLUMNS} FROM messages WHERE queued"
            sql += " AND (client_submit_time, id) > ($1, $2)"
            args: list[Any] = [*after]
            if due_at is not None:
                args.append(due_at)
                sql += f" AND due_at <= ${len(args)} AND NOT held"
            if not include_locked:
                args.append(now)
                sql += f" AND (lock_owner IS NULL OR lock_expiry <= ${len(args)})"
            args.append(page)
            sql += f" ORDER BY client_submit_time, id LIMIT ${len(args)}"

            async def read(conn: Any, sql: str = sql, args: list[Any] = args) -> list[Any]:
                return list(await conn.fetch(sql, *args))

            found = await self._database().run(read, read_only=True)
            for r in found:
                yield queue_entry_from_row(tuple(r), now)
            if len(found) < page:
                return
            after = (found[-1][1], found[-1][0])

    async def queued_recipients(self) -> list[QueuedRecipients]:
        async def read(conn: Any) -> list[QueuedRecipients]:
            rows = await conn.fetch(
                "SELECT m.id, COUNT(r.idx), m.next_attempt IS NOT NULL OR COALESCE(BOOL_OR(r.attempts > 0"
                " OR r.state = 'deferred'), FALSE) FROM messages m LEFT JOIN recipients r"
                " ON r.message_id = m.id AND r.state NOT IN ('delivered', 'failed') WHERE m.queued"
                " GROUP BY m.id"
            )
            return [QueuedRecipients(str(mid), waiting, deferred) for mid, waiting, deferred in rows]

        return await self._database().run(read, read_only=True)

    async def next_due(self) -> float | None:
        async def read(conn: Any) -> float | None:
            free, held = await conn.fetchrow(
                "SELECT (SELECT MIN(due_at) FROM messages WHERE queued AND lock_owner IS NULL AND NOT held),"
                " (SELECT MIN(GREATEST(due_at, lock_expiry)) FROM messages"
                "  WHERE lock_owner IS NOT NULL AND queued AND NOT held)"
            )
            times = [t for t in (free, held) if t is not None]
            return min(times) if times else None

        return await self._database().run(read, read_only=True)

    async def lock(self, message_id: str, owner: str, lease: float) -> Message:
        mid = int_id(message_id)
        check_time("lease", lease)
        check_wire_text("lock owner", owner, allow_empty=False)
        now = self._clock()

        async def tx(conn: Any) -> Message:
            # SKIP LOCKED: a row another daemon is deciding about right now is theirs; never wait for it
            row = await conn.fetchrow(
                "SELECT queued, lock_owner, lock_expiry FROM messages WHERE id=$1 FOR UPDATE SKIP LOCKED", mid
            )
            if row is None:
                await rows.state_row(conn, mid, for_update=False)  # NotFound if there is no such message
                raise NoAccess(f"message {message_id} is being locked by another spooler")
            queued, lock_owner, lock_expiry = row
            if not queued:
                raise NotInQueue(f"message {message_id} is not in the outgoing queue")
            if lock_owner != owner and live(lock_owner, lock_expiry, now):
                raise NoAccess(f"message {message_id} is locked by {lock_owner}")
            await conn.execute(
                "UPDATE messages SET lock_owner=$1, lock_expiry=$2 WHERE id=$3", owner, now + lease, mid
            )
            return replace_writable(await rows.load_message(conn, mid, now), False)

        return await self._database().run(tx)

    async def renew(self, message_id: str, owner: str, lease: float) -> None:
        mid = int_id(message_id)
        check_time("lease", lease)
        now = self._clock()

        async def tx(conn: Any) -> None:
            await rows.require_lock(conn, mid, owner)
            await conn.execute("UPDATE messages SET lock_expiry=$1 WHERE id=$2", now + lease, mid)

        await self._database().run(tx)

    async def unlock(self, message_id: str, owner: str, *, retry_at: float | None = None) -> None:
        mid = int_id(message_id)
        check_time("retry_at", retry_at)

        async def tx(conn: Any) -> None:
            await rows.require_lock(conn, mid, owner)
            if retry_at is None:
                await conn.execute("UPDATE messages SET lock_owner=NULL, lock_expiry=NULL WHERE id=$1", mid)
            else:
                await conn.execute(
                    "UPDATE messages SET lock_owner=NULL, lock_expiry=NULL, next_attempt=$1,"
                    " due_at=GREATEST($1, COALESCE(not_before, $1)) WHERE id=$2",
                    retry_at,
                    mid,
                )

        await self._changed(tx, "unlock" if retry_at is None else "retry", message_id)

    async def reclaim(self, owner: str) -> int:
        check_wire_text("lock owner", owner, allow_empty=False)

        async def tx(conn: Any) -> int:
            return affected(
                await conn.execute(
                    "UPDATE messages SET lock_owner=NULL, lock_expiry=NULL WHERE queued"
                    " AND (lock_owner=$1 OR starts_with(lock_owner, $2))",
                    owner,
                    owner + "#",
                )
            )

        count: int = await self._database().run(tx, notify=True)
        if count:
            self._hub.publish(QueueChanged(self.name, "reclaim", None))
        return count

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
                await conn.execute("UPDATE messages SET size=$1 WHERE id=$2", len(content), mid)
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
            return replace_writable(await rows.load_message(conn, mid, now), False)

        return await self._database().run(tx)

    async def record_outcomes(
        self,
        message_id: str,
        owner: str,
        updates: Sequence[RecipientUpdate],
        *,
        delay_reported: bool = False,
    ) -> None:
        mid = int_id(message_id)
        check_updates(updates)

        async def tx(conn: Any) -> None:
            await rows.require_lock(conn, mid, owner)
            if delay_reported:
                await conn.execute("UPDATE messages SET delay_reported=TRUE WHERE id=$1", mid)
            await _apply_updates(conn, mid, message_id, updates)

        await self._database().run(tx)

    async def finish(self, message_id: str, owner: str, *, outcomes: Sequence[RecipientUpdate] = ()) -> None:
        mid = int_id(message_id)
        check_updates(outcomes)
        now = self._clock()

        async def tx(conn: Any) -> None:
            queued, lock_owner, _expiry = await rows.state_row(conn, mid)
            if not queued:
                raise NotInQueue(f"message {message_id} is not in the outgoing queue")
            if lock_owner != owner:
                raise NoSupport(f"only the spooler holding message {message_id}'s lock can finish it")
            await _apply_updates(conn, mid, message_id, outcomes)
            sentmail, delete_after = await conn.fetchrow(
                "SELECT sentmail_folder, delete_after_submit FROM messages WHERE id=$1", mid
            )
            if delete_after:
                await conn.execute("DELETE FROM messages WHERE id=$1", mid)
                return
            await conn.execute(
                "UPDATE messages SET flags = flags & $1, submit_flags=0, next_attempt=NULL, due_at=NULL,"
                " queued=FALSE, lock_owner=NULL, lock_expiry=NULL,"
                " folder_id = COALESCE((SELECT id FROM folders WHERE id=$2), folder_id),"
                " filed_at = CASE WHEN EXISTS (SELECT 1 FROM folders WHERE id=$2) THEN $3 ELSE filed_at END"
                " WHERE id=$4",
                ~(MessageFlag.SUBMIT | MessageFlag.UNSENT) & 0xFFFFFFFF,
                sentmail,
                now,
                mid,
            )

        await self._changed(tx, "finish", message_id)

    # ------------------------------------------------------------------ inbound

    async def deliver(self, message: InboundMessage, *, state: StateChange | None = None) -> Delivery:
        validate_inbound(message)
        if state is not None:
            validate_state_change(state)
        message_class = inbound_class(message.message_class)
        filed = self._clock()
        received = message.received_at if message.received_at is not None else filed
        content = bytes(message.content)

        async def tx(conn: Any) -> Delivery:
            inbox = await rows.folder_by_role(conn, FolderRole.INBOX)
            folder_id = choose_receive_folder(message_class, await rows.receive_table(conn), inbox.id)
            mid = await conn.fetchval(
                "INSERT INTO messages (folder_id, message_class, flags, priority, sender, subject, size,"
                " created_at, filed_at) VALUES ($1, $2, $3, 0, $4, $5, $6, $7, $8) RETURNING id",
                int(folder_id), message_class, int(message.flags), message.sender, message.subject,
                len(content), received, filed,
            )  # fmt: skip
            await conn.execute("INSERT INTO contents (message_id, data) VALUES ($1, $2)", mid, content)
            if state is not None:
                await _write_state(conn, state)
            return Delivery(str(mid), folder_id, message_class, MessageFlag(message.flags))

        d: Delivery = await self._database().run(tx, notify=True)
        self._hub.publish(NewMail(self.name, d.message_id, d.folder_id, d.message_class, d.flags))
        return d

    async def transport_state(self, transport: str, prefix: str = "") -> dict[str, bytes]:
        check_wire_text("transport", transport, allow_empty=False)

        async def read(conn: Any) -> dict[str, bytes]:
            found = await conn.fetch(
                "SELECT key, value FROM transport_state WHERE transport=$1 AND starts_with(key, $2)",
                transport,
                prefix,
            )
            return {r[0]: bytes(r[1]) for r in found}

        return await self._database().run(read, read_only=True)

    async def set_transport_state(self, change: StateChange) -> None:
        validate_state_change(change)

        async def tx(conn: Any) -> None:
            await _write_state(conn, change)

        await self._database().run(tx)

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


async def _apply_updates(conn: Any, mid: int, message_id: str, updates: Sequence[RecipientUpdate]) -> None:
    """Record each outcome; a recipient that already has a final one keeps it (exactly one each)."""
    for u in updates:
        found = await conn.fetchval(
            "SELECT state FROM recipients WHERE message_id=$1 AND idx=$2 FOR UPDATE", mid, u.index
        )
        if found is None:
            raise InvalidArgument(f"message {message_id} has no recipient #{u.index}")
        if RecipientState(found).final:
            continue
        state = RecipientState(u.state)
        await conn.execute(
            "UPDATE recipients SET state=$1, responsibility=$2, attempts=attempts+1, next_attempt=$3,"
            " last_code=$4, last_status=$5, last_text=$6, transport=COALESCE($7, transport)"
            " WHERE message_id=$8 AND idx=$9",
            state.value, state.final, u.next_attempt, u.code, u.status, u.text, u.transport, mid, u.index,
        )  # fmt: skip


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


async def _insert_message(conn: Any, folder_id: str, draft: Draft, now: float) -> int:
    """A new message (a draft, not queued) in ``folder_id``: its row, content and recipients."""
    folder = await rows.folder_by_id(conn, folder_id)
    mid: int = await conn.fetchval(
        "INSERT INTO messages (folder_id, message_class, flags, priority, sender, subject, size,"
        " created_at, not_before, sentmail_folder, delete_after_submit, ndr_requested, dr_requested,"
        " filed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        " RETURNING id",
        int(folder.id),
        *(await rows.draft_values(conn, draft, now)),
        now,
    )
    await conn.execute("INSERT INTO contents (message_id, data) VALUES ($1, $2)", mid, bytes(draft.content))
    await rows.insert_recipients(conn, mid, draft.recipients)
    return mid


class _Queueing:
    """Putting a message with recipients on the queue (``submit``'s rule), the arguments checked before
    the transaction: SUBMIT + UNSENT, client submit time, due, optionally already locked, and every
    recipient without a final outcome pending again."""

    def __init__(self, now: float, preprocess: bool, lock: tuple[str, float] | None) -> None:
        self.now = now
        self.preprocess = preprocess
        self.lock_owner: str | None = None
        self.lock_expiry: float | None = None
        if lock is not None:
            check_wire_text("lock owner", lock[0], allow_empty=False)
            check_time("lease", lock[1])
            self.lock_owner, self.lock_expiry = lock[0], now + lock[1]

    async def __call__(self, conn: Any, mid: int) -> None:
        message_class, flags, not_before = await conn.fetchrow(
            "SELECT message_class, flags, not_before FROM messages WHERE id=$1", mid
        )
        await conn.execute(
            "UPDATE messages SET message_class=$1, flags=$2, submit_flags=$3, client_submit_time=$4,"
            " next_attempt=NULL, due_at=$5, queued=TRUE, lock_owner=$6, lock_expiry=$7,"
            " delay_reported=FALSE, held=FALSE WHERE id=$8",
            outbound_class(message_class),
            flags | MessageFlag.SUBMIT | MessageFlag.UNSENT,
            SubmitFlag.PREPROCESS if self.preprocess else 0,
            self.now,
            due(self.now, not_before),
            self.lock_owner,
            self.lock_expiry,
            mid,
        )
        # A recipient with a final outcome keeps it (it is never sent twice) unless the client asks
        # for the message to be sent again (MSGFLAG_RESEND).
        keep_final = "" if flags & MessageFlag.RESEND else f" AND {_NOT_FINAL}"
        await conn.execute(
            "UPDATE recipients SET responsibility=FALSE, state='pending', attempts=0, next_attempt=NULL,"
            " last_code=NULL, last_status=NULL, last_text=NULL, transport=NULL WHERE message_id=$1"
            + keep_final,
            mid,
        )
