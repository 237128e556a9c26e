"""The SQLite store's schema, versioned in ``PRAGMA user_version`` and brought forward one step at a time.

Each migration runs inside the writer's ``BEGIN IMMEDIATE`` transaction, so two processes opening a new
database at once cannot both create it, and a crash half-way through a migration leaves the old version.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from spoolerd.errors import StoreUnavailable
from spoolerd.message import FolderRole

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]


def _script(conn: sqlite3.Connection, sql: str) -> None:
    """Run statements one by one: ``executescript`` would COMMIT the caller's transaction first."""
    statement = ""
    for line in sql.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement in migration: {statement.strip()[:60]!r}")


def _v1(conn: sqlite3.Connection) -> None:
    _script(
        conn,
        """
        CREATE TABLE folders (
            id        INTEGER PRIMARY KEY AUTOINCREMENT,
            parent_id INTEGER REFERENCES folders(id),
            name      TEXT NOT NULL,
            role      TEXT UNIQUE
        );
        CREATE TABLE messages (
            id                  INTEGER PRIMARY KEY AUTOINCREMENT,
            folder_id           INTEGER NOT NULL REFERENCES folders(id),
            message_class       TEXT NOT NULL,
            flags               INTEGER NOT NULL,
            submit_flags        INTEGER NOT NULL DEFAULT 0,
            priority            INTEGER NOT NULL DEFAULT 0,
            sender              TEXT NOT NULL,
            subject             TEXT NOT NULL,
            size                INTEGER NOT NULL,
            created_at          REAL NOT NULL,
            client_submit_time  REAL,
            not_before          REAL,
            next_attempt        REAL,
            due_at              REAL,
            sentmail_folder     INTEGER,
            delete_after_submit INTEGER NOT NULL DEFAULT 0,
            ndr_requested       INTEGER NOT NULL DEFAULT 1,
            dr_requested        INTEGER NOT NULL DEFAULT 0,
            lock_owner          TEXT,
            lock_expiry         REAL,
            queued              INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX messages_by_folder ON messages(folder_id, id);
        -- the outgoing queue in submission order; covering the due and lock filters, so a scan for
        -- the due head never reads table rows it skips; then the due head for the spooler's timer
        CREATE INDEX queue_order ON messages(client_submit_time, id, due_at, lock_owner, lock_expiry)
            WHERE queued = 1;
        CREATE INDEX queue_due ON messages(due_at) WHERE queued = 1 AND lock_owner IS NULL;
        CREATE INDEX queue_locks ON messages(lock_expiry) WHERE lock_owner IS NOT NULL;
        -- content apart, so queue and folder scans never page through message bodies
        CREATE TABLE contents (
            message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
            data       BLOB NOT NULL
        );
        CREATE TABLE recipients (
            message_id     INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            idx            INTEGER NOT NULL,
            address        TEXT NOT NULL,
            display_name   TEXT NOT NULL,
            address_type   TEXT NOT NULL,
            kind           TEXT NOT NULL,
            responsibility INTEGER NOT NULL DEFAULT 0,
            state          TEXT NOT NULL DEFAULT 'pending',
            attempts       INTEGER NOT NULL DEFAULT 0,
            next_attempt   REAL,
            last_code      INTEGER,
            last_status    TEXT,
            last_text      TEXT,
            transport      TEXT,
            PRIMARY KEY (message_id, idx)
        ) WITHOUT ROWID;
        CREATE TABLE receive_folders (
            message_class TEXT PRIMARY KEY,
            folder_id     INTEGER NOT NULL REFERENCES folders(id)
        );
        """,
    )
    root = conn.execute(
        "INSERT INTO folders (parent_id, name, role) VALUES (NULL, '', ?)", (FolderRole.ROOT.value,)
    ).lastrowid
    for role, name in (
        (FolderRole.INBOX, "Inbox"),
        (FolderRole.OUTBOX, "Outbox"),
        (FolderRole.SENT, "Sent Items"),
        (FolderRole.DRAFTS, "Drafts"),
        (FolderRole.DELETED, "Deleted Items"),
    ):
        conn.execute("INSERT INTO folders (parent_id, name, role) VALUES (?, ?, ?)", (root, name, role.value))


def _v2(conn: sqlite3.Connection) -> None:
    # Per-transport memory kept in the store (e.g. IMAP UIDVALIDITY and the UIDs already taken), so a
    # transport's view of what it fetched commits in the same transaction as the delivered message.
    _script(
        conn,
        """
        CREATE TABLE transport_state (
            transport TEXT NOT NULL,
            key       TEXT NOT NULL,
            value     BLOB NOT NULL,
            PRIMARY KEY (transport, key)
        ) WITHOUT ROWID;
        """,
    )


def _v3(conn: sqlite3.Connection) -> None:
    # Whether the sender was already warned that this submission is delayed (at most once each).
    conn.execute("ALTER TABLE messages ADD COLUMN delay_reported INTEGER NOT NULL DEFAULT 0")


def _v4(conn: sqlite3.Connection) -> None:
    # Held messages stay queued but are never due; the due index leaves them out.
    conn.execute("ALTER TABLE messages ADD COLUMN held INTEGER NOT NULL DEFAULT 0")
    conn.execute("DROP INDEX queue_due")
    conn.execute(
        "CREATE INDEX queue_due ON messages(due_at) WHERE queued = 1 AND lock_owner IS NULL AND held = 0"
    )


def _v5(conn: sqlite3.Connection) -> None:
    # When a message was filed in its folder (created, delivered, moved, or filed as a sent copy): the
    # age retention counts from. Existing messages take their submit (else creation) time. The index
    # leaves queued messages out, as purges do.
    conn.execute("ALTER TABLE messages ADD COLUMN filed_at REAL")
    conn.execute("UPDATE messages SET filed_at = COALESCE(client_submit_time, created_at)")
    conn.execute("CREATE INDEX messages_filed ON messages(folder_id, filed_at) WHERE queued = 0")


def _dsn(conn: sqlite3.Connection) -> None:
    # RFC 3461 DSN parameters as the submitter gave them: RET and ENVID per message, NOTIFY (a bit set,
    # 0 for NEVER) and ORCPT per recipient; NULL where not given.
    _script(
        conn,
        """
        ALTER TABLE messages ADD COLUMN dsn_ret TEXT;
        ALTER TABLE messages ADD COLUMN dsn_envid TEXT;
        ALTER TABLE recipients ADD COLUMN notify INTEGER;
        ALTER TABLE recipients ADD COLUMN orcpt TEXT;
        """,
    )


def _outbox(conn: sqlite3.Connection) -> None:
    # The event outbox of delivery-event webhooks (spoolerd/outbox.py): events written with the outcomes
    # they tell of, in order per webhook; and who sends each webhook's events (a lease).
    _script(
        conn,
        """
        CREATE TABLE outbox (
            seq        INTEGER PRIMARY KEY AUTOINCREMENT,
            webhook    TEXT NOT NULL,
            message_id TEXT NOT NULL,
            payload    BLOB NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX outbox_order ON outbox(webhook, seq);
        CREATE TABLE outbox_senders (
            webhook TEXT PRIMARY KEY,
            owner   TEXT NOT NULL,
            expiry  REAL NOT NULL
        ) WITHOUT ROWID;
        """,
    )


def _content_lines(conn: sqlite3.Connection) -> None:
    # What the store found of each message's lines when it wrote its content (spoolerd.message.
    # ContentLines), in the message's row: a column after the content in ``contents`` would have SQLite
    # build a large content's zeroblob in memory (its zeros are left out only at a record's end).
    # 0, nothing known, for a content written before.
    _script(conn, "ALTER TABLE messages ADD COLUMN lines INTEGER NOT NULL DEFAULT 0;")


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _v1,
    _v2,
    _v3,
    _v4,
    _v5,
    _dsn,
    _outbox,
    _content_lines,
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the database to ``target`` inside the caller's transaction; return the version found."""
    (found,) = conn.execute("PRAGMA user_version").fetchone()
    if found > SCHEMA_VERSION:
        raise StoreUnavailable(
            f"database schema version {found} is newer than this spoolerd understands ({SCHEMA_VERSION});"
            " upgrade spoolerd"
        )
    for version in range(found + 1, target + 1):
        MIGRATIONS[version - 1](conn)
        conn.execute(f"PRAGMA user_version = {version:d}")
    return int(found)
