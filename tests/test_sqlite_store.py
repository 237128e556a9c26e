"""What only the SQLite provider promises: schema migrations, its pragmas, group commit semantics."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from spoolerd.errors import NoRecipients, StoreUnavailable
from spoolerd.message import Draft, FolderRole, NewRecipient
from spoolerd.store import StoreContext
from stores.sqlite import SqliteSettings, SqliteStore
from stores.sqlite.engine import GroupCommitWriter, connect
from stores.sqlite.schema import SCHEMA_VERSION, migrate
from stores.sqlite.writelock import WriteLock, write_lock_path
from tests.conftest import FakeClock


def make_store(tmp_path: Path, clock: FakeClock, **settings: object) -> SqliteStore:
    return SqliteStore(SqliteSettings.model_validate(settings), StoreContext("local", tmp_path, clock))


async def test_relative_path_is_taken_from_the_state_directory(tmp_path: Path, clock: FakeClock) -> None:
    store = make_store(tmp_path / "state", clock, path="sub/x.db")
    await store.start()
    await store.stop()
    assert (tmp_path / "state" / "sub" / "x.db").is_file()


def _modes(directory: Path, name: str) -> dict[str, int]:
    return {p.name: p.stat().st_mode & 0o777 for p in directory.glob(name + "*")}


async def test_the_database_and_its_wal_files_are_not_for_other_users(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Under a umask of 022 in a directory open to all (found by a first-day trial: every user could read
    the mail), a new database and its WAL files are not readable by others; a file made so earlier is
    tightened at start."""
    os.chmod(tmp_path, 0o755)
    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.execute("PRAGMA user_version=0")
    os.chmod(tmp_path / "old.db", 0o644)
    old = os.umask(0o022)
    try:
        for name in ("new.db", "old.db"):
            store = make_store(tmp_path, clock, path=name)
            await store.start()
            outbox = await store.folder(FolderRole.OUTBOX)
            await store.submit_new(
                outbox.id, Draft(b"Subject: s\r\n\r\nsecret\r\n", [NewRecipient("a@b.org")])
            )
            modes = _modes(tmp_path, name)
            await store.stop()
            assert {name, name + "-wal", name + "-shm"} <= set(modes), modes
            # 0660 less the umask: the group keeps what the umask gives it, others get nothing
            assert set(modes.values()) == {0o640}, modes
    finally:
        os.umask(old)


async def test_a_symlinked_database_starts_and_its_target_is_kept_private(
    tmp_path: Path, clock: FakeClock
) -> None:
    """An operator's database elsewhere, linked into the state directory (found by a second first-day
    trial: the daemon did not start, 'too many levels of symbolic links')."""
    (tmp_path / "data").mkdir()
    target = tmp_path / "data" / "spool.db"
    with sqlite3.connect(target) as conn:
        conn.execute("PRAGMA user_version=0")
    os.chmod(target, 0o644)
    wal = tmp_path / "data" / "spool.db-wal"  # an old one, where SQLite keeps it: beside the target
    wal.touch()
    os.chmod(wal, 0o644)
    os.symlink(target, tmp_path / "spool.db")
    store = make_store(tmp_path, clock, path="spool.db")
    await store.start()
    modes = _modes(tmp_path / "data", "spool.db")
    await store.stop()
    assert modes["spool.db"] == modes["spool.db-wal"] == 0o640, modes


async def test_page_size_is_set_for_a_new_file_and_an_old_one_keeps_its_own(
    tmp_path: Path, clock: FakeClock
) -> None:
    def page_size(name: str) -> int:
        with sqlite3.connect(tmp_path / name) as conn:
            return int(conn.execute("PRAGMA page_size").fetchone()[0])

    for name, first, second in (("big.db", 16384, 4096), ("small.db", 4096, 65536)):
        for size in (first, second):  # the file made with the first keeps it, and still serves
            store = make_store(tmp_path, clock, path=name, page_size=size)
            await store.start()
            outbox = await store.folder(FolderRole.OUTBOX)
            await store.submit_new(outbox.id, Draft(b"x" * 100_000, [NewRecipient("a@example.org")]))
            await store.stop()
        assert page_size(name) == first
    for bad in (1000, 256, 131072):
        with pytest.raises(ValueError, match="power of two"):
            SqliteSettings.model_validate({"page_size": bad})


async def test_an_old_schema_is_migrated_keeping_its_data(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "spool.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    migrate(conn, target=1)
    conn.execute(
        "INSERT INTO messages (folder_id, message_class, flags, sender, subject, size, created_at)"
        " VALUES (3, 'IPM.Note', 8, 'a@example.org', 'old', 3, 1.0)"
    )
    conn.execute("INSERT INTO contents (message_id, data) VALUES (1, X'6f6c64')")
    conn.execute("COMMIT")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()

    store = make_store(tmp_path, clock)
    await store.start()
    try:
        assert (await store.open("1")).subject == "old"
    finally:
        await store.stop()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "transport_state" in tables
    conn.close()


async def test_a_newer_schema_is_refused(tmp_path: Path, clock: FakeClock) -> None:
    conn = sqlite3.connect(tmp_path / "spool.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    store = make_store(tmp_path, clock)
    with pytest.raises(StoreUnavailable, match="newer than this spoolerd understands"):
        await store.start()
    await store.stop()


async def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path, clock: FakeClock) -> None:
    (tmp_path / "spool.db").write_bytes(b"this is not sqlite" * 100)
    store = make_store(tmp_path, clock)
    with pytest.raises(StoreUnavailable, match="database error"):
        await store.start()
    await store.stop()


def test_connections_are_wal_with_full_sync(tmp_path: Path) -> None:
    conn = connect(str(tmp_path / "x.db"), busy_timeout=1)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    conn.close()


def test_opening_a_reader_is_no_change_for_the_writer(tmp_path: Path) -> None:
    """The store takes a moved ``data_version`` on its writer's connection for another process's commit
    (an "external" queue change): a reader connection of its own opening must not move it."""
    path = str(tmp_path / "x.db")
    writer = connect(path, busy_timeout=1)
    writer.execute("CREATE TABLE t (x)")
    before = writer.execute("PRAGMA data_version").fetchone()[0]
    reader = connect(path, busy_timeout=1, reader=True)
    assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    assert writer.execute("PRAGMA data_version").fetchone()[0] == before
    other = connect(path, busy_timeout=1)  # a writer's connection sets auto-vacuum: that moves it
    assert writer.execute("PRAGMA data_version").fetchone()[0] != before
    for conn in (reader, other, writer):
        conn.close()


async def test_concurrent_writes_share_commits_and_a_failure_stays_alone(
    tmp_path: Path, clock: FakeClock
) -> None:
    store = make_store(tmp_path, clock)
    await store.start()
    try:
        outbox = await store.folder(FolderRole.OUTBOX)
        good = await asyncio.gather(
            *(
                store.create_message(outbox.id, Draft(b"x", [NewRecipient("a@example.org")]))
                for _ in range(200)
            )
        )
        empty = await store.create_message(outbox.id, Draft(b"x", []))
        before = store.commits
        results = await asyncio.gather(
            *(store.submit(mid) for mid in [*good[:100], empty, *good[100:]]), return_exceptions=True
        )
        assert store.commits - before < 200 / 4  # group commit: many submits per fsync
        assert isinstance(results[100], NoRecipients)
        assert [r for i, r in enumerate(results) if i != 100] == [None] * 200
        queued = {e.id async for e in store.outgoing_queue()}
        assert queued == set(good)
    finally:
        await store.stop()


async def test_writes_racing_with_stop_fail_cleanly_instead_of_hanging(
    tmp_path: Path, clock: FakeClock
) -> None:
    import anyio

    store = make_store(tmp_path, clock)
    await store.start()
    outbox = await store.folder(FolderRole.OUTBOX)
    ids = [
        await store.create_message(outbox.id, Draft(b"x", [NewRecipient("a@example.org")])) for _ in range(3)
    ]
    mid = ids[0]
    with anyio.fail_after(10):
        stopping = asyncio.ensure_future(store.stop())
        await asyncio.sleep(0)  # stop() has begun
        results = await asyncio.gather(*(store.submit(i) for i in ids[1:]), return_exceptions=True)
        await stopping
    for result in results:
        assert result is None or isinstance(result, StoreUnavailable), result
    with anyio.fail_after(5), pytest.raises(StoreUnavailable):
        await store.submit(mid)


async def test_external_checks_take_no_write_transactions(tmp_path: Path, clock: FakeClock) -> None:
    store = make_store(tmp_path, clock)
    await store.start()
    try:
        outbox = await store.folder(FolderRole.OUTBOX)
        before = store.commits
        for _ in range(20):  # sequential: every write wakes the watcher on our own WAL
            await store.create_message(outbox.id, Draft(b"x", [NewRecipient("a@example.org")]))
        assert store.commits - before == 20
    finally:
        await store.stop()


async def test_a_write_waits_for_another_writers_lock_and_goes_once_it_is_let_go(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Writers in other processes are kept apart by ``<db>-write.lock`` (flock: woken when it is let go,
    not SQLite's busy loop of sleeps); another open of the file stands for another process."""
    import anyio

    store = make_store(tmp_path, clock)
    await store.start()
    other = WriteLock(store.path, timeout=5)
    try:
        outbox = await store.folder(FolderRole.OUTBOX)
        assert await asyncio.to_thread(os.path.exists, write_lock_path(store.path))
        await asyncio.to_thread(other.acquire)
        draft = Draft(b"x", [NewRecipient("a@x.org")])
        created = asyncio.ensure_future(store.create_message(outbox.id, draft))
        done, _ = await asyncio.wait([created], timeout=0.3)
        assert not done  # SQLite's own lock is free: only the write lock holds it back
        with anyio.fail_after(5):  # readers do not take it
            assert [e async for e in store.outgoing_queue()] == []
        other.release()
        with anyio.fail_after(5):
            mid = await created
        assert (await store.open(mid)).content == b"x"
    finally:
        other.close()
        await store.stop()


async def test_only_a_commit_that_changed_rows_rings_for_the_other_processes(tmp_path: Path) -> None:
    """A write transaction that changed nothing (a claim that found nothing due) wakes no other process:
    each would look, find nothing new and ring again for its own empty claim."""
    path = str(tmp_path / "x.db")
    rings: list[int] = []
    writer = GroupCommitWriter(
        lambda: connect(path, busy_timeout=5), after_commit=lambda: rings.append(1), lock_path=path
    )
    await writer.start("x")
    try:
        await writer.run(lambda conn: conn.execute("CREATE TABLE t (a INTEGER)"))
        rings.clear()
        await writer.run(lambda conn: conn.execute("UPDATE t SET a = 1 WHERE a = 2").rowcount)
        assert rings == [] and writer.commits == 2
        await writer.run(lambda conn: conn.execute("INSERT INTO t VALUES (2)"))
        assert rings == [1]
        await writer.run(lambda conn: conn.execute("UPDATE t SET a = 1 WHERE a = 2").rowcount)
        assert rings == [1, 1]
    finally:
        await writer.stop()


async def test_a_write_lock_held_past_the_busy_timeout_fails_the_write_instead_of_hanging(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A holder that stopped (a debugger, SIGSTOP) makes writes fail as SQLite's busy timeout would."""
    import anyio

    store = make_store(tmp_path, clock, busy_timeout=0.3)
    await store.start()
    other = WriteLock(store.path, timeout=5)
    try:
        outbox = await store.folder(FolderRole.OUTBOX)
        await asyncio.to_thread(other.acquire)
        with anyio.fail_after(10), pytest.raises(StoreUnavailable, match="write lock"):
            await store.create_message(outbox.id, Draft(b"x", [NewRecipient("a@x.org")]))
        other.release()
        with anyio.fail_after(10):
            mid = await store.create_message(outbox.id, Draft(b"y", [NewRecipient("a@x.org")]))
        assert (await store.open(mid)).content == b"y"
    finally:
        other.close()
        with anyio.fail_after(10):
            await store.stop()


async def test_a_failing_after_commit_hook_still_answers_the_committed_writes(tmp_path: Path) -> None:
    import anyio

    path = str(tmp_path / "x.db")

    def broken() -> None:
        raise RuntimeError("hook")

    writer = GroupCommitWriter(lambda: connect(path, busy_timeout=5), after_commit=broken, lock_path=path)
    await writer.start("x")
    try:
        with anyio.fail_after(10):  # a hook that killed the writer thread left its callers waiting
            await writer.run(lambda conn: conn.execute("CREATE TABLE t (a INTEGER)"))
            await writer.run(lambda conn: conn.execute("INSERT INTO t VALUES (1)"))  # answered: committed
            count = await writer.run(lambda conn: conn.execute("SELECT COUNT(*) FROM t").fetchone()[0])
        assert count == 1  # and the writer goes on
    finally:
        await writer.stop()


def test_rings_in_quick_succession_wake_the_store_a_few_times_and_the_last_is_seen(tmp_path: Path) -> None:
    """A busy store rings at each of its commits; the watcher takes what comes within a few ms of a wake
    together (500 rings, 0.2 ms apart: about 30 wakes, not 500), and still wakes after the last ring."""
    import threading
    import time

    from stores.sqlite.watch import Doorbell, ExternalChangeWatcher

    db = str(tmp_path / "x.db")
    wakes: list[float] = []
    woken = threading.Condition()

    def on_wake() -> None:
        with woken:
            wakes.append(time.monotonic())
            woken.notify_all()

    watcher = ExternalChangeWatcher(db, on_wake)
    watcher.start()
    bell = Doorbell(db)
    try:
        for _ in range(499):
            bell.ring()
            time.sleep(0.0002)  # the pace of a busy writer's commits
        last = time.monotonic()
        bell.ring()
        with woken:
            assert woken.wait_for(lambda: wakes[-1] >= last if wakes else False, 10)
        assert len(wakes) < 100
    finally:
        bell.close()
        watcher.stop()


async def test_messages_claimed_but_not_read_are_let_go_at_once(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim commits, then its messages are read beside the writer: a read that fails must not leave
    them leased to nobody until the lease expires (five minutes by default)."""
    store = make_store(tmp_path, clock)
    await store.start()
    try:
        outbox = await store.folder(FolderRole.OUTBOX)
        mid = await store.submit_new(outbox.id, Draft(b"Subject: x\r\n\r\nx\r\n", [NewRecipient("b@x.org")]))

        async def broken(fn: object) -> object:
            raise StoreUnavailable("disk I/O error")

        with monkeypatch.context() as patched:
            patched.setattr(store._readers, "run", broken)
            with pytest.raises(StoreUnavailable):
                await store.claim("spooler", 300, 10)
        assert [m.id for m in await store.claim("spooler", 300, 10)] == [mid]  # not still taken
    finally:
        await store.stop()
