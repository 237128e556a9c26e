"""The embedded default message store: one SQLite database per store, in WAL mode.

Every method that changes state is one job on the group-commit writer (``engine.py``) and returns only
after its transaction is durable; reads run on reader connections against a consistent snapshot. The
transaction bodies below (``_tx_*``) are plain functions of a connection, so each rule of the store
contract is visible in one place.
"""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import structlog
from pydantic import BaseModel, ConfigDict, Field

from spoolerd.errors import (
    ConfigError,
    InvalidArgument,
    NoAccess,
    NoRecipients,
    NoSupport,
    NotInQueue,
    Submitted,
    UnableToAbort,
)
from spoolerd.events import EventHub, NewMail, QueueChanged, StoreEvent, Subscription
from spoolerd.fsutil import fsync_directory, make_dirs_durably, unwritable
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

from . import tables
from .engine import GroupCommitWriter, ReaderPool, connect
from .schema import migrate
from .watch import Doorbell, ExternalChangeWatcher

__all__ = ["PURGE_BATCH", "SqliteSettings", "SqliteStore", "check_updates"]

log = structlog.get_logger("spoolerd.store.sqlite")

PURGE_BATCH = 256  # messages a purge deletes per transaction: other writers get their turn in between


class SqliteSettings(BaseModel):
    """``[stores.NAME]`` keys of a store with ``provider = "sqlite"``."""

    model_config = ConfigDict(extra="forbid")

    path: Path = Field(Path("spool.db"), description="database file; relative to the state directory")
    busy_timeout: float = Field(10.0, gt=0, description="seconds to wait for another process's write lock")
    reader_threads: int = Field(2, ge=1, le=16, description="threads serving reads")
    max_batch: int = Field(1024, ge=1, description="most writes committed by one transaction (group commit)")
    queue_page: int = Field(512, ge=1, le=100_000, description="queue rows read per page when iterating")


class SqliteStore:
    """A ``MessageStore`` kept in one SQLite database."""

    Settings: ClassVar[type[BaseModel]] = SqliteSettings
    can_queue: ClassVar[bool] = True

    def __init__(self, settings: SqliteSettings, context: StoreContext) -> None:
        self.name = context.name
        path = settings.path if settings.path.is_absolute() else context.state_dir / settings.path
        self.path = str(path)
        self._settings = settings
        self._clock = context.clock
        self._hub: EventHub[StoreEvent] = EventHub()

        def open_connection() -> sqlite3.Connection:
            return connect(self.path, busy_timeout=settings.busy_timeout)

        self._doorbell: Doorbell | None = None
        self._writer = GroupCommitWriter(
            open_connection, max_batch=settings.max_batch, after_commit=self._ring
        )
        self._readers = ReaderPool(open_connection, threads=settings.reader_threads)
        self._watcher: ExternalChangeWatcher | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._data_version: int | None = None
        self._check_running = False
        self._check_again = False

    # ------------------------------------------------------------------ life cycle

    def check(self) -> None:
        """Before start (``spoolerd check-config``, ``run`` and a reload): the database and the directory
        that holds it (and its WAL files) can be written, or created."""
        problem = unwritable(str(Path(self.path).parent), directory=True) or unwritable(self.path)
        if problem is not None:
            raise ConfigError([f"path: {problem}"])

    async def start(self) -> None:
        await asyncio.to_thread(make_dirs_durably, str(Path(self.path).parent))
        created = not await asyncio.to_thread(os.path.exists, self.path)
        self._loop = asyncio.get_running_loop()
        self._doorbell = await asyncio.to_thread(Doorbell, self.path)
        await self._writer.start(self.name)
        await self._writer.run(migrate)
        if await self._writer.run(tables.enable_incremental_vacuum, read_only=True):
            log.info("store rebuilt so that purges give space back", store=self.name, path=self.path)
        if created:
            await asyncio.to_thread(fsync_directory, self.path)
        # watch first, then take the baseline: a commit in between shows as a change, never goes missing
        self._watcher = ExternalChangeWatcher(self.path, self._on_external_wake)
        self._watcher.start()
        self._data_version = await self._writer.run(tables.data_version, read_only=True)

    async def stop(self) -> None:
        if self._watcher is not None:
            await asyncio.to_thread(self._watcher.stop)
            self._watcher = None
        await self._writer.stop()
        await self._readers.stop()
        if self._doorbell is not None:
            self._doorbell.close()
            self._doorbell = None
        self._hub.close()

    async def __aenter__(self) -> SqliteStore:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def commits(self) -> int:
        """Write transactions committed so far (group commit makes this smaller than the writes)."""
        return self._writer.commits

    # ------------------------------------------------------------------ events

    def subscribe(
        self, limit: float = math.inf, accept: Callable[[StoreEvent], bool] | None = None
    ) -> Subscription[StoreEvent]:
        return self._hub.subscribe(limit, accept)

    def _ring(self) -> None:  # writer thread, after each commit
        if self._doorbell is not None:
            self._doorbell.ring()

    def _on_external_wake(self) -> None:  # watcher thread
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._check_external)

    def _check_external(self) -> None:
        # data_version on the writer's connection moves only when *another* connection committed.
        if self._check_running:
            self._check_again = True
            return
        self._check_running = True
        loop = self._loop
        assert loop is not None

        def answered(version: Any, exc: BaseException | None) -> None:  # writer thread
            if not loop.is_closed():
                loop.call_soon_threadsafe(self._external_checked, version, exc)

        self._writer.enqueue(tables.data_version, answered, read_only=True)

    def _external_checked(self, version: int | None, exc: BaseException | None) -> None:
        self._check_running = False
        if exc is not None:  # e.g. a busy moment; look again (unless the store is closing)
            self._check_again = self._watcher is not None
        elif version is not None and version != self._data_version:
            self._data_version = version
            self._hub.publish(QueueChanged(self.name, "external"))
        if self._check_again:
            self._check_again = False
            self._check_external()

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
        now = self._clock()
        return str(await self._writer.run(lambda conn: _insert_message(conn, folder_id, draft, now)))

    async def save(self, message_id: str, draft: Draft) -> None:
        validate_draft(draft)
        mid = tables.int_id(message_id)
        now = self._clock()

        def tx(conn: sqlite3.Connection) -> None:
            row = tables.state_row(conn, mid)
            tables.refuse_if_queued(row, now, "saved")
            values = tables.draft_values(conn, draft, now)
            conn.execute(
                "UPDATE messages SET message_class=?, flags=?, priority=?, sender=?, subject=?, size=?,"
                " not_before=?, sentmail_folder=?, delete_after_submit=?, ndr_requested=?,"
                " dr_requested=? WHERE id=?",
                (*values[:6], *values[7:], mid),
            )
            conn.execute("UPDATE contents SET data=? WHERE message_id=?", (bytes(draft.content), mid))
            conn.execute("DELETE FROM recipients WHERE message_id=?", (mid,))
            tables.insert_recipients(conn, mid, draft.recipients)

        await self._writer.run(tx)

    async def open(self, message_id: str, access: Access = Access.READ) -> Message:
        mid = tables.int_id(message_id)
        access = Access(access)
        now = self._clock()

        def read(conn: sqlite3.Connection) -> Message:
            message = tables.load_message(conn, mid, now)
            if SubmitFlag.LOCKED in message.submit_flags:
                raise NoAccess(f"message {message_id} is locked by the spooler")
            if message.queued and access is Access.MODIFY:
                raise Submitted(f"message {message_id} is submitted; it can only be read or aborted")
            writable = not message.queued and access is not Access.READ
            return tables.replace_writable(message, writable)

        return await self._readers.run(read)

    async def list_messages(self, folder_id: str) -> list[MessageSummary]:
        def read(conn: sqlite3.Connection) -> list[MessageSummary]:
            folder = tables.folder_by_id(conn, folder_id)
            rows = conn.execute(
                "SELECT id, folder_id, message_class, flags, sender, subject, size,"
                " COALESCE(client_submit_time, created_at) FROM messages WHERE folder_id=? ORDER BY id",
                (int(folder.id),),
            )
            return [
                MessageSummary(str(r[0]), str(r[1]), r[2], MessageFlag(r[3]), r[4], r[5], r[6], r[7])
                for r in rows
            ]

        return await self._readers.run(read)

    async def move(self, message_id: str, folder_id: str) -> None:
        mid = tables.int_id(message_id)
        now = self._clock()

        def tx(conn: sqlite3.Connection) -> None:
            tables.refuse_if_queued(tables.state_row(conn, mid), now, "moved")
            folder = tables.folder_by_id(conn, folder_id)
            conn.execute("UPDATE messages SET folder_id=?, filed_at=? WHERE id=?", (int(folder.id), now, mid))

        await self._writer.run(tx)

    async def delete(self, message_id: str) -> None:
        mid = tables.int_id(message_id)
        now = self._clock()

        def tx(conn: sqlite3.Connection) -> None:
            tables.refuse_if_queued(tables.state_row(conn, mid), now, "deleted")
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

    # ------------------------------------------------------------------ outgoing queue: client side

    async def submit(
        self, message_id: str, *, preprocess: bool = False, lock: tuple[str, float] | None = None
    ) -> None:
        mid = tables.int_id(message_id)
        now = self._clock()
        queue = _Queueing(now, preprocess, lock)

        def tx(conn: sqlite3.Connection) -> None:
            row = tables.state_row(conn, mid)
            tables.refuse_if_queued(row, now, "submitted again")
            (count,) = conn.execute("SELECT COUNT(*) FROM recipients WHERE message_id=?", (mid,)).fetchone()
            if count == 0:
                raise NoRecipients(f"message {message_id} has no recipients")
            queue(conn, mid)

        publish = partial(self._hub.publish, QueueChanged(self.name, "submit", message_id))
        await self._writer.run(tx, on_commit=lambda _: publish())

    async def submit_new(
        self, folder_id: str, draft: Draft, *, preprocess: bool = False, lock: tuple[str, float] | None = None
    ) -> str:
        validate_draft(draft)
        if not draft.recipients:
            raise NoRecipients("the message has no recipients")
        now = self._clock()
        queue = _Queueing(now, preprocess, lock)

        def tx(conn: sqlite3.Connection) -> str:
            mid = _insert_message(conn, folder_id, draft, now)
            queue(conn, mid)
            return str(mid)

        def publish(message_id: str) -> None:
            self._hub.publish(QueueChanged(self.name, "submit", message_id))

        return await self._writer.run(tx, on_commit=publish)

    async def abort_submit(self, message_id: str) -> None:
        mid = tables.int_id(message_id)
        now = self._clock()

        def tx(conn: sqlite3.Connection) -> None:
            queued, lock_owner, lock_expiry = tables.state_row(conn, mid)
            if not queued:
                raise NotInQueue(f"message {message_id} is not in the outgoing queue")
            if tables.live(lock_owner, lock_expiry, now):
                raise UnableToAbort(f"message {message_id} is locked by the spooler")
            conn.execute(
                "UPDATE messages SET flags = flags & ?, submit_flags=0, client_submit_time=NULL,"
                " next_attempt=NULL, due_at=NULL, queued=0, lock_owner=NULL, lock_expiry=NULL WHERE id=?",
                (~MessageFlag.SUBMIT & 0xFFFFFFFF, mid),
            )

        publish = partial(self._hub.publish, QueueChanged(self.name, "abort", message_id))
        await self._writer.run(tx, on_commit=lambda _: publish())

    async def hold(self, message_id: str, held: bool = True) -> None:
        mid = tables.int_id(message_id)

        def tx(conn: sqlite3.Connection) -> None:
            queued, _owner, _expiry = tables.state_row(conn, mid)
            if not queued:
                raise NotInQueue(f"message {message_id} is not in the outgoing queue")
            conn.execute("UPDATE messages SET held=? WHERE id=?", (int(held), mid))

        publish = partial(
            self._hub.publish, QueueChanged(self.name, "hold" if held else "release", message_id)
        )
        await self._writer.run(tx, on_commit=lambda _: publish())

    # ------------------------------------------------------------------ outgoing queue: spooler side

    async def outgoing_queue(
        self, *, due_at: float | None = None, include_locked: bool = True
    ) -> AsyncIterator[QueueEntry]:
        page = self._settings.queue_page
        after: tuple[float, int] = (float("-inf"), 0)
        while True:
            now = self._clock()
            sql = f"SELECT {tables.QUEUE_COLUMNS} FROM messages WHERE queued=1"
            sql += " AND (client_submit_time, id) > (?, ?)"
            args: list[Any] = [*after]
            if due_at is not None:
                sql += " AND due_at <= ? AND held = 0"
                args.append(due_at)
            if not include_locked:
                sql += " AND (lock_owner IS NULL OR lock_expiry <= ?)"
                args.append(now)
            sql += " ORDER BY client_submit_time, id LIMIT ?"
            args.append(page)
            rows = await self._readers.run(partial(tables.fetch_all, sql=sql, args=args))
            for r in rows:
                yield tables.queue_entry_from_row(r, now)
            if len(rows) < page:
                return
            after = (rows[-1][1], rows[-1][0])

    async def queued_recipients(self) -> list[QueuedRecipients]:
        sql = (
            "SELECT m.id, COUNT(r.idx), m.next_attempt IS NOT NULL OR COALESCE(MAX(r.attempts > 0"
            " OR r.state = 'deferred'), 0) FROM messages m LEFT JOIN recipients r ON r.message_id = m.id"
            " AND r.state NOT IN ('delivered', 'failed') WHERE m.queued = 1 GROUP BY m.id"
        )
        rows = await self._readers.run(partial(tables.fetch_all, sql=sql, args=[]))
        return [QueuedRecipients(str(mid), waiting, bool(deferred)) for mid, waiting, deferred in rows]

    async def next_due(self) -> float | None:
        def read(conn: sqlite3.Connection) -> float | None:
            (free,) = conn.execute(
                "SELECT MIN(due_at) FROM messages WHERE queued=1 AND lock_owner IS NULL AND held=0"
            ).fetchone()
            (held,) = conn.execute(
                "SELECT MIN(MAX(due_at, lock_expiry)) FROM messages"
                " WHERE lock_owner IS NOT NULL AND queued=1 AND held=0"
            ).fetchone()
            times = [t for t in (free, held) if t is not None]
            return min(times) if times else None

        return await self._readers.run(read)

    async def lock(self, message_id: str, owner: str, lease: float) -> Message:
        mid = tables.int_id(message_id)
        check_time("lease", lease)
        check_wire_text("lock owner", owner, allow_empty=False)
        now = self._clock()

        def tx(conn: sqlite3.Connection) -> Message:
            queued, lock_owner, lock_expiry = tables.state_row(conn, mid)
            if not queued:
                raise NotInQueue(f"message {message_id} is not in the outgoing queue")
            if lock_owner != owner and tables.live(lock_owner, lock_expiry, now):
                raise NoAccess(f"message {message_id} is locked by {lock_owner}")
            conn.execute(
                "UPDATE messages SET lock_owner=?, lock_expiry=? WHERE id=?", (owner, now + lease, mid)
            )
            return tables.replace_writable(tables.load_message(conn, mid, now), False)

        return await self._writer.run(tx)

    async def renew(self, message_id: str, owner: str, lease: float) -> None:
        mid = tables.int_id(message_id)
        check_time("lease", lease)
        now = self._clock()

        def tx(conn: sqlite3.Connection) -> None:
            tables.require_lock(conn, mid, owner)
            conn.execute("UPDATE messages SET lock_expiry=? WHERE id=?", (now + lease, mid))

        await self._writer.run(tx)

    async def unlock(self, message_id: str, owner: str, *, retry_at: float | None = None) -> None:
        mid = tables.int_id(message_id)
        check_time("retry_at", retry_at)

        def tx(conn: sqlite3.Connection) -> None:
            tables.require_lock(conn, mid, owner)
            if retry_at is None:
                conn.execute("UPDATE messages SET lock_owner=NULL, lock_expiry=NULL WHERE id=?", (mid,))
            else:
                conn.execute(
                    "UPDATE messages SET lock_owner=NULL, lock_expiry=NULL, next_attempt=?,"
                    " due_at=MAX(?, COALESCE(not_before, ?)) WHERE id=?",
                    (retry_at, retry_at, retry_at, mid),
                )

        reason = "unlock" if retry_at is None else "retry"
        publish = partial(self._hub.publish, QueueChanged(self.name, reason, message_id))
        await self._writer.run(tx, on_commit=lambda _: publish())

    async def reclaim(self, owner: str) -> int:
        check_wire_text("lock owner", owner, allow_empty=False)
        pattern = owner.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "#%"

        def tx(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "UPDATE messages SET lock_owner=NULL, lock_expiry=NULL WHERE queued=1"
                " AND (lock_owner=? OR lock_owner LIKE ? ESCAPE '\\')",
                (owner, pattern),
            )
            return cursor.rowcount

        def announce(count: int) -> None:
            if count:
                self._hub.publish(QueueChanged(self.name, "reclaim", None))

        return await self._writer.run(tx, on_commit=announce)

    async def complete_preprocessing(
        self,
        message_id: str,
        owner: str,
        *,
        content: bytes | None = None,
        recipients: Sequence[NewRecipient] | None = None,
    ) -> Message:
        mid = tables.int_id(message_id)
        if recipients is not None:
            validate_draft(Draft(content=b"", recipients=recipients))
        now = self._clock()

        def tx(conn: sqlite3.Connection) -> Message:
            tables.require_lock(conn, mid, owner)
            if content is not None:
                conn.execute("UPDATE contents SET data=? WHERE message_id=?", (bytes(content), mid))
                conn.execute("UPDATE messages SET size=? WHERE id=?", (len(content), mid))
            if recipients is not None:
                (tried,) = conn.execute(
                    "SELECT COUNT(*) FROM recipients WHERE message_id=? AND attempts > 0", (mid,)
                ).fetchone()
                if tried:
                    raise Submitted(f"message {message_id} has delivery attempts; its recipients are fixed")
                if not recipients:
                    raise NoRecipients(f"preprocessing left message {message_id} with no recipients")
                conn.execute("DELETE FROM recipients WHERE message_id=?", (mid,))
                tables.insert_recipients(conn, mid, recipients)
            conn.execute(
                "UPDATE messages SET submit_flags = submit_flags & ? WHERE id=?",
                (~SubmitFlag.PREPROCESS & 0xFFFFFFFF, mid),
            )
            return tables.replace_writable(tables.load_message(conn, mid, now), False)

        return await self._writer.run(tx)

    async def record_outcomes(
        self,
        message_id: str,
        owner: str,
        updates: Sequence[RecipientUpdate],
        *,
        delay_reported: bool = False,
    ) -> None:
        mid = tables.int_id(message_id)
        check_updates(updates)

        def tx(conn: sqlite3.Connection) -> None:
            tables.require_lock(conn, mid, owner)
            if delay_reported:
                conn.execute("UPDATE messages SET delay_reported=1 WHERE id=?", (mid,))
            _apply_updates(conn, mid, message_id, updates)

        await self._writer.run(tx)

    async def finish(self, message_id: str, owner: str, *, outcomes: Sequence[RecipientUpdate] = ()) -> None:
        mid = tables.int_id(message_id)
        check_updates(outcomes)
        now = self._clock()

        def tx(conn: sqlite3.Connection) -> None:
            queued, lock_owner, _expiry = tables.state_row(conn, mid)
            if not queued:
                raise NotInQueue(f"message {message_id} is not in the outgoing queue")
            if lock_owner != owner:
                raise NoSupport(f"only the spooler holding message {message_id}'s lock can finish it")
            _apply_updates(conn, mid, message_id, outcomes)
            sentmail, delete_after = conn.execute(
                "SELECT sentmail_folder, delete_after_submit FROM messages WHERE id=?", (mid,)
            ).fetchone()
            conn.execute(
                "UPDATE messages SET flags = flags & ?, submit_flags=0, next_attempt=NULL, due_at=NULL,"
                " queued=0, lock_owner=NULL, lock_expiry=NULL WHERE id=?",
                (~(MessageFlag.SUBMIT | MessageFlag.UNSENT) & 0xFFFFFFFF, mid),
            )
            if sentmail is not None and tables.folder_exists(conn, sentmail):
                conn.execute("UPDATE messages SET folder_id=?, filed_at=? WHERE id=?", (sentmail, now, mid))
            if delete_after:
                conn.execute("DELETE FROM messages WHERE id=?", (mid,))

        publish = partial(self._hub.publish, QueueChanged(self.name, "finish", message_id))
        await self._writer.run(tx, on_commit=lambda _: publish())

    # ------------------------------------------------------------------ inbound

    async def deliver(self, message: InboundMessage, *, state: StateChange | None = None) -> Delivery:
        validate_inbound(message)
        if state is not None:
            validate_state_change(state)
        message_class = inbound_class(message.message_class)
        filed = self._clock()
        received = message.received_at if message.received_at is not None else filed
        content = bytes(message.content)

        def tx(conn: sqlite3.Connection) -> Delivery:
            folder_id = choose_receive_folder(
                message_class, tables.receive_table(conn), tables.folder_by_role(conn, FolderRole.INBOX).id
            )
            cur = conn.execute(
                "INSERT INTO messages (folder_id, message_class, flags, priority, sender, subject, size,"
                " created_at, filed_at) VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?)",
                (int(folder_id), message_class, int(message.flags), message.sender, message.subject,
                 len(content), received, filed),
            )  # fmt: skip
            mid = int(cur.lastrowid or 0)
            tables.insert_content(conn, mid, content)
            if state is not None:
                _write_state(conn, state)
            return Delivery(str(mid), folder_id, message_class, MessageFlag(message.flags))

        def announce(d: Delivery) -> None:
            self._hub.publish(NewMail(self.name, d.message_id, d.folder_id, d.message_class, d.flags))

        return await self._writer.run(tx, on_commit=announce)

    async def transport_state(self, transport: str, prefix: str = "") -> dict[str, bytes]:
        check_wire_text("transport", transport, allow_empty=False)

        def read(conn: sqlite3.Connection) -> dict[str, bytes]:
            rows = conn.execute(
                "SELECT key, value FROM transport_state WHERE transport=? AND substr(key, 1, length(?)) = ?",
                (transport, prefix, prefix),
            )
            return {key: bytes(value) for key, value in rows}

        return await self._readers.run(read)

    async def set_transport_state(self, change: StateChange) -> None:
        validate_state_change(change)
        await self._writer.run(lambda conn: _write_state(conn, change))

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


def _insert_message(conn: sqlite3.Connection, folder_id: str, draft: Draft, now: float) -> int:
    """A new message (a draft, not queued) in ``folder_id``: its row, content and recipients."""
    folder = tables.folder_by_id(conn, folder_id)
    cur = conn.execute(
        "INSERT INTO messages (folder_id, message_class, flags, priority, sender, subject, size,"
        " created_at, not_before, sentmail_folder, delete_after_submit, ndr_requested, dr_requested,"
        " filed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (int(folder.id), *tables.draft_values(conn, draft, now), now),
    )
    mid = int(cur.lastrowid or 0)
    tables.insert_content(conn, mid, bytes(draft.content))
    tables.insert_recipients(conn, mid, draft.recipients)
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

    def __call__(self, conn: sqlite3.Connection, mid: int) -> None:
        now = self.now
        message_class, flags, not_before = conn.execute(
            "SELECT message_class, flags, not_before FROM messages WHERE id=?", (mid,)
        ).fetchone()
        conn.execute(
            "UPDATE messages SET message_class=?, flags=?, submit_flags=?, client_submit_time=?,"
            " next_attempt=NULL, due_at=?, queued=1, lock_owner=?, lock_expiry=?, delay_reported=0,"
            " held=0"
            " WHERE id=?",
            (
                outbound_class(message_class),
                flags | MessageFlag.SUBMIT | MessageFlag.UNSENT,
                SubmitFlag.PREPROCESS if self.preprocess else 0,
                now,
                tables.due(now, not_before),
                self.lock_owner,
                self.lock_expiry,
                mid,
            ),
        )
        # A recipient with a final outcome keeps it (it is never sent twice) unless the client asks
        # for the message to be sent again (MSGFLAG_RESEND).
        keep_final = "" if flags & MessageFlag.RESEND else " AND state NOT IN ('delivered', 'failed')"
        conn.execute(
            "UPDATE recipients SET responsibility=0, state='pending', attempts=0, next_attempt=NULL,"
            " last_code=NULL, last_status=NULL, last_text=NULL, transport=NULL WHERE message_id=?"
            + keep_final,
            (mid,),
        )


def check_updates(updates: Sequence[RecipientUpdate]) -> None:
    for update in updates:
        RecipientState(update.state)
        check_time("next_attempt", update.next_attempt)
        for what, text in (("transport", update.transport), ("status", update.status)):
            if text is not None:
                check_wire_text(what, text)


def _apply_updates(
    conn: sqlite3.Connection, mid: int, message_id: str, updates: Sequence[RecipientUpdate]
) -> None:
    """Record each outcome; a recipient that already has a final one keeps it (exactly one each)."""
    for u in updates:
        found = conn.execute(
            "SELECT state FROM recipients WHERE message_id=? AND idx=?", (mid, u.index)
        ).fetchone()
        if found is None:
            raise InvalidArgument(f"message {message_id} has no recipient #{u.index}")
        if RecipientState(found[0]).final:
            continue
        state = RecipientState(u.state)
        conn.execute(
            "UPDATE recipients SET state=?, responsibility=?, attempts=attempts+1, next_attempt=?,"
            " last_code=?, last_status=?, last_text=?, transport=COALESCE(?, transport)"
            " WHERE message_id=? AND idx=?",
            (state.value, int(state.final), u.next_attempt, u.code, u.status, u.text, u.transport,
             mid, u.index),
        )  # fmt: skip


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
