"""What only the SQLite provider promises about retention: a purge gives the space back (the database
file and its WAL shrink), one batch per transaction, and a database from before incremental auto-vacuum
is rebuilt once so it can shrink too, with the age of what it holds taken from its submit times."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from spoolerd.message import Draft, FolderRole, NewRecipient
from stores.common.rules import PURGE_BATCH
from stores.sqlite import SqliteStore
from stores.sqlite.schema import migrate
from tests.conftest import FakeClock
from tests.test_sqlite_store import make_store

BODY = b"Subject: sent\r\n\r\n" + bytes(range(256)) * 16  # 4 KB that does not compress


def wal_bytes(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def file_bytes(path: Path) -> int:
    return path.stat().st_size + wal_bytes(path)


def pragma(path: Path, name: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"PRAGMA {name}").fetchone()[0])
    finally:
        conn.close()


async def fill_sent(store: SqliteStore, count: int) -> str:
    sent = await store.folder(FolderRole.SENT)
    rcpt = [NewRecipient("b@example.org")]
    await asyncio.gather(*(store.create_message(sent.id, Draft(BODY, rcpt)) for _ in range(count)))
    return sent.id


async def test_a_purge_shrinks_the_database_and_its_wal(tmp_path: Path, clock: FakeClock) -> None:
    store = make_store(tmp_path, clock)
    await store.start()
    try:
        sent = await fill_sent(store, 600)
        clock.advance(1)
        full = file_bytes(tmp_path / "spool.db")
        assert full > 600 * 4096
        commits = store.commits
        assert await store.purge(sent, clock.now) == 600
        assert store.commits - commits == -(-600 // PURGE_BATCH)  # one transaction per batch
        assert file_bytes(tmp_path / "spool.db") < full / 10
        assert wal_bytes(tmp_path / "spool.db") == 0
    finally:
        await store.stop()
    assert pragma(tmp_path / "spool.db", "freelist_count") == 0


async def test_a_database_from_before_auto_vacuum_is_rebuilt_and_dated(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "spool.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN IMMEDIATE")
    migrate(conn, target=4)
    conn.execute(
        "INSERT INTO messages (folder_id, message_class, flags, sender, subject, size, created_at,"
        " client_submit_time) VALUES (4, 'IPM.Note', 0, 'a@example.org', 'sent', 3, 100.0, 200.0)"
    )
    conn.execute("INSERT INTO contents (message_id, data) VALUES (1, X'6f6c64')")
    conn.execute("COMMIT")
    conn.close()
    assert pragma(path, "auto_vacuum") == 0

    store = make_store(tmp_path, clock)
    await store.start()
    try:
        sent = await store.folder(FolderRole.SENT)
        assert sent.id == "4"
        assert await store.oldest(sent.id) == 200.0  # its submit time stands in for when it was filed
        assert (await store.open("1")).content == b"old"
    finally:
        await store.stop()
    assert pragma(path, "auto_vacuum") == 2  # INCREMENTAL from now on


async def test_a_new_database_is_made_with_incremental_auto_vacuum(tmp_path: Path, clock: FakeClock) -> None:
    store = make_store(tmp_path, clock)
    await store.start()
    await store.stop()
    assert pragma(tmp_path / "spool.db", "auto_vacuum") == 2
