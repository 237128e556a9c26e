"""The loop's writer: jobs of one loop turn share a transaction, callers are answered only once the WAL
is on disk, and whatever would make the loop wait (a taken lock, a long job) goes to the writer thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from spoolerd.errors import StoreUnavailable
from stores.sqlite import walsync
from stores.sqlite.engine import connect
from stores.sqlite.loopwriter import LoopWriter
from stores.sqlite.writelock import WriteLock


def _create(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE t (a INTEGER)")


def _insert(value: int) -> object:
    return lambda conn: conn.execute("INSERT INTO t VALUES (?)", (value,)).rowcount


def _count(path: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM t").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "x.db")


@pytest.fixture
async def writer(path: str) -> Iterator[LoopWriter]:
    w = LoopWriter(path, lambda: connect(path, busy_timeout=0.5), lock_timeout=0.5)
    await w.start("x")
    await w.run(_create)
    try:
        yield w  # type: ignore[misc]
    finally:
        with anyio.fail_after(10):
            await w.stop()


class Seen:
    """An asyncio event set each time ``name`` of ``obj`` is called (the loop's own calls)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, obj: object, name: str) -> None:
        self.event = asyncio.Event()
        original = getattr(obj, name)

        def seen(*args: object) -> object:
            self.event.set()
            return original(*args)

        monkeypatch.setattr(obj, name, seen)

    async def next(self) -> None:
        with anyio.fail_after(10):
            await self.event.wait()
        self.event.clear()


class HeldSync:
    """``os.fdatasync`` in the syncer, held until released; counts the calls."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, fd: int) -> None:
        self.calls += 1
        self.entered.set()
        if not self.release.wait(10):
            raise AssertionError("never released")


async def test_one_turns_jobs_share_one_commit(writer: LoopWriter, path: str) -> None:
    before = writer.commits
    with anyio.fail_after(10):
        results = await asyncio.gather(*(writer.run(_insert(i)) for i in range(50)))  # type: ignore[arg-type]
    assert results == [1] * 50
    assert writer.commits == before + 1 and writer.handed_over == 0
    assert await asyncio.to_thread(_count, path) == 50


async def test_a_caller_is_answered_only_once_the_wal_is_on_disk(
    writer: LoopWriter, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldSync()
    monkeypatch.setattr(walsync.os, "fdatasync", held)
    committed: list[object] = []
    write = asyncio.ensure_future(writer.run(_insert(1), on_commit=committed.append))  # type: ignore[arg-type]
    with anyio.fail_after(10):
        await asyncio.to_thread(held.entered.wait)
    for _ in range(20):  # the loop turns; nothing answers the caller while the fsync runs
        await asyncio.sleep(0)
    assert not write.done() and committed == []
    assert await asyncio.to_thread(_count, path) == 1  # committed (visible) but not yet acknowledged
    held.release.set()
    with anyio.fail_after(10):
        assert await write == 1
    assert committed == [1]


async def test_commits_made_during_an_fsync_share_the_next(
    writer: LoopWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldSync()
    monkeypatch.setattr(walsync.os, "fdatasync", held)
    first = asyncio.ensure_future(writer.run(_insert(0)))  # type: ignore[arg-type]
    with anyio.fail_after(10):
        await asyncio.to_thread(held.entered.wait)
    committed = Seen(monkeypatch, writer._syncer, "after_sync")
    later = []
    for i in range(1, 4):  # three turns, three commits, none answered yet
        later.append(asyncio.ensure_future(writer.run(_insert(i))))  # type: ignore[arg-type]
        await committed.next()
    assert writer.commits == 5 and not any(task.done() for task in later)
    held.release.set()
    with anyio.fail_after(10):
        await asyncio.gather(first, *later)
    assert held.calls == 2  # the first commit's fsync, then one for the three made meanwhile


async def test_a_failed_fsync_fails_its_callers_and_the_next_one_succeeds(
    writer: LoopWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(walsync.os, "fdatasync", broken)
    with anyio.fail_after(10), pytest.raises(StoreUnavailable, match="durable"):
        await writer.run(_insert(1))  # type: ignore[arg-type]
    monkeypatch.undo()
    with anyio.fail_after(10):
        assert await writer.run(_insert(2)) == 1  # type: ignore[arg-type]


async def test_a_taken_write_lock_hands_the_batch_to_the_thread_which_waits(
    writer: LoopWriter, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed = Seen(monkeypatch, writer, "_hand_over")
    other = WriteLock(path, timeout=5)
    try:
        await asyncio.to_thread(other.acquire)
        write = asyncio.ensure_future(writer.run(_insert(1)))  # type: ignore[arg-type]
        await handed.next()
        await asyncio.sleep(0.05)  # the thread waits for the lock; the loop does not
        assert not write.done()
        other.release()
        with anyio.fail_after(10):
            assert await write == 1
    finally:
        other.close()


async def test_a_writer_without_the_lock_is_waited_for_on_the_thread(
    writer: LoopWriter, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sqlite3 shell, say: SQLite's own lock, taken, makes the loop hand over, not block."""
    handed = Seen(monkeypatch, writer, "_hand_over")
    shell = sqlite3.connect(path, isolation_level=None)
    try:
        shell.execute("BEGIN IMMEDIATE")
        write = asyncio.ensure_future(writer.run(_insert(1)))  # type: ignore[arg-type]
        await handed.next()
        shell.execute("COMMIT")
        with anyio.fail_after(10):
            assert await write == 1
    finally:
        shell.close()


async def test_background_and_read_only_jobs_run_on_the_writer_thread(writer: LoopWriter) -> None:
    def where(conn: sqlite3.Connection) -> str:
        return threading.current_thread().name

    with anyio.fail_after(10):
        assert await writer.run(where) == threading.current_thread().name
        assert (await writer.run(where, background=True)).startswith("sqlite-writer")
        assert (await writer.run(where, read_only=True)).startswith("sqlite-writer")


async def test_a_failing_job_rolls_back_alone(writer: LoopWriter, path: str) -> None:
    def bad(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES (99)")
        raise ValueError("no")

    with anyio.fail_after(10):
        jobs = [writer.run(_insert(1)), writer.run(bad), writer.run(_insert(2))]  # type: ignore[arg-type]
        results = await asyncio.gather(*jobs, return_exceptions=True)
    assert results[0] == 1 and results[2] == 1 and isinstance(results[1], Exception)
    assert await asyncio.to_thread(_count, path) == 2


async def test_what_is_queued_at_stop_is_committed_and_answered(path: str) -> None:
    w = LoopWriter(path, lambda: connect(path, busy_timeout=0.5))
    await w.start("x")
    await w.run(_create)
    writes = [asyncio.ensure_future(w.run(_insert(i))) for i in range(5)]  # type: ignore[arg-type]
    await asyncio.sleep(0)  # queued, not yet drained
    with anyio.fail_after(10):
        await w.stop()
        assert await asyncio.gather(*writes) == [1] * 5
    assert await asyncio.to_thread(_count, path) == 5
