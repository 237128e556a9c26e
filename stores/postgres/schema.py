"""The PostgreSQL store's schema, versioned in its own table and brought forward one step at a time.

Every migration runs in one transaction holding an advisory lock, so daemons starting together against a
new database never both create it, and a crash half-way leaves the old version. A database whose version
is newer than this code is refused: an older daemon must not write rows a newer one would misread.
"""

from __future__ import annotations

from typing import Any

from spoolerd.errors import StoreUnavailable
from spoolerd.message import FolderRole

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]

_V1 = """
CREATE TABLE folders (
    id        BIGSERIAL PRIMARY KEY,
    parent_id BIGINT REFERENCES folders(id),
    name      TEXT NOT NULL,
    role      TEXT UNIQUE
);
CREATE TABLE messages (
    id                  BIGSERIAL PRIMARY KEY,
    folder_id           BIGINT NOT NULL REFERENCES folders(id),
    message_class       TEXT NOT NULL,
    flags               BIGINT NOT NULL,
    submit_flags        BIGINT NOT NULL DEFAULT 0,
    priority            INTEGER NOT NULL DEFAULT 0,
    sender              TEXT NOT NULL,
    subject             TEXT NOT NULL,
    size                BIGINT NOT NULL,
    created_at          DOUBLE PRECISION NOT NULL,
    filed_at            DOUBLE PRECISION NOT NULL,
    client_submit_time  DOUBLE PRECISION,
    not_before          DOUBLE PRECISION,
    next_attempt        DOUBLE PRECISION,
    due_at              DOUBLE PRECISION,
    sentmail_folder     BIGINT,
    delete_after_submit BOOLEAN NOT NULL DEFAULT FALSE,
    ndr_requested       BOOLEAN NOT NULL DEFAULT TRUE,
    dr_requested        BOOLEAN NOT NULL DEFAULT FALSE,
    lock_owner          TEXT,
    lock_expiry         DOUBLE PRECISION,
    queued              BOOLEAN NOT NULL DEFAULT FALSE,
    delay_reported      BOOLEAN NOT NULL DEFAULT FALSE,
    held                BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX messages_by_folder ON messages(folder_id, id);
CREATE INDEX messages_filed ON messages(folder_id, filed_at) WHERE NOT queued;
CREATE INDEX queue_order ON messages(client_submit_time, id) WHERE queued;
CREATE INDEX queue_due ON messages(due_at) WHERE queued AND lock_owner IS NULL AND NOT held;
CREATE INDEX queue_locks ON messages(lock_owner, lock_expiry) WHERE lock_owner IS NOT NULL;
CREATE TABLE contents (
    message_id BIGINT PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    data       BYTEA NOT NULL
);
CREATE TABLE recipients (
    message_id     BIGINT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    idx            INTEGER NOT NULL,
    address        TEXT NOT NULL,
    display_name   TEXT NOT NULL,
    address_type   TEXT NOT NULL,
    kind           TEXT NOT NULL,
    responsibility BOOLEAN NOT NULL DEFAULT FALSE,
    state          TEXT NOT NULL DEFAULT 'pending',
    attempts       INTEGER NOT NULL DEFAULT 0,
    next_attempt   DOUBLE PRECISION,
    last_code      INTEGER,
    last_status    TEXT,
    last_text      TEXT,
    transport      TEXT,
    PRIMARY KEY (message_id, idx)
);
CREATE TABLE receive_folders (
    message_class TEXT PRIMARY KEY,
    folder_id     BIGINT NOT NULL REFERENCES folders(id)
);
CREATE TABLE transport_state (
    transport TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     BYTEA NOT NULL,
    PRIMARY KEY (transport, key)
);
"""


async def _v1(conn: Any) -> None:
    await conn.execute(_V1)
    root = await conn.fetchval(
        "INSERT INTO folders (parent_id, name, role) VALUES (NULL, '', $1) RETURNING id",
        FolderRole.ROOT.value,
    )
    await conn.executemany(
        "INSERT INTO folders (parent_id, name, role) VALUES ($1, $2, $3)",
        [
            (root, name, role.value)
            for role, name in (
                (FolderRole.INBOX, "Inbox"),
                (FolderRole.OUTBOX, "Outbox"),
                (FolderRole.SENT, "Sent Items"),
                (FolderRole.DRAFTS, "Drafts"),
                (FolderRole.DELETED, "Deleted Items"),
            )
        ],
    )


async def _dsn(conn: Any) -> None:
    # RFC 3461 DSN parameters as the submitter gave them: RET and ENVID per message, NOTIFY (a bit set,
    # 0 for NEVER) and ORCPT per recipient; NULL where not given.
    await conn.execute(
        """
        ALTER TABLE messages ADD COLUMN dsn_ret TEXT;
        ALTER TABLE messages ADD COLUMN dsn_envid TEXT;
        ALTER TABLE recipients ADD COLUMN notify INTEGER;
        ALTER TABLE recipients ADD COLUMN orcpt TEXT;
        """
    )


async def _outbox(conn: Any) -> None:
    # The event outbox of delivery-event webhooks (spoolerd/outbox.py): events written with the outcomes
    # they tell of, in order per webhook; and who sends each webhook's events (a lease).
    await conn.execute(
        """
        CREATE TABLE outbox (
            seq        BIGSERIAL PRIMARY KEY,
            webhook    TEXT NOT NULL,
            message_id TEXT NOT NULL,
            payload    BYTEA NOT NULL,
            created_at DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX outbox_order ON outbox(webhook, seq);
        CREATE TABLE outbox_senders (
            webhook TEXT PRIMARY KEY,
            owner   TEXT NOT NULL,
            expiry  DOUBLE PRECISION NOT NULL
        );
        """
    )


async def _due_order(conn: Any) -> None:
    # The due head is read from the due index in due order, so it holds the id too: a page of many
    # messages due at one instant (a dead relay's, say) is a range of it, not a sort.
    await conn.execute("DROP INDEX queue_due")
    await conn.execute(
        "CREATE INDEX queue_due ON messages(due_at, id) WHERE queued AND lock_owner IS NULL AND NOT held"
    )


async def _content_lines(conn: Any) -> None:
    # What the store found of each message's lines when it wrote its content (spoolerd.message.
    # ContentLines), in the message's row, where the SQLite store keeps it too (stores/sqlite/schema.py).
    # 0, nothing known, for a content written before.
    await conn.execute("ALTER TABLE messages ADD COLUMN lines INTEGER NOT NULL DEFAULT 0")


MIGRATIONS = (_v1, _dsn, _outbox, _due_order, _content_lines)
SCHEMA_VERSION = len(MIGRATIONS)
_LOCK_KEY = 0x5370_6F6F  # pg_advisory_xact_lock key shared by every spoolerd migrating a database


async def migrate(conn: Any, schema: str, target: int = SCHEMA_VERSION) -> int:
    """Create ``schema`` if needed and bring it to ``target`` in one transaction; return the version found."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(f"SET LOCAL search_path TO {schema}")
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        found = await conn.fetchval("SELECT max(version) FROM schema_version") or 0
        if found > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"database schema {schema} is at version {found}, newer than this spoolerd understands"
                f" ({SCHEMA_VERSION}); upgrade spoolerd"
            )
        for version in range(found + 1, target + 1):
            await MIGRATIONS[version - 1](conn)
            await conn.execute("DELETE FROM schema_version")
            await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
        return int(found)
