"""SQLite I/O for the store: one writer thread with group commit, and a small pool of reader threads.

Durability and throughput pull against each other: every acknowledged change must be on disk before the
call returns (``synchronous=FULL``: the WAL is fsynced at each COMMIT), yet an fsync costs milliseconds.
The writer therefore takes every job that is waiting, runs each inside its own SAVEPOINT (so one failing
job rolls back only itself) in a single ``BEGIN IMMEDIATE`` transaction, commits once, and only then
answers all of them. Concurrent callers share one fsync; a lone caller pays one.

Readers use their own connections; WAL gives each read transaction a consistent snapshot that never
blocks the writer. Nothing here knows what the store's tables mean.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from spoolerd.errors import StoreError, StoreUnavailable

from .writelock import WriteLock

__all__ = ["Done", "GroupCommitWriter", "ReaderPool", "connect"]

T = TypeVar("T")
Done = Callable[[Any, BaseException | None], None]


def connect(
    path: str, *, busy_timeout: float, reader: bool = False, page_size: int = 4096
) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, full sync, foreign keys on,
    incremental auto-vacuum and ``page_size`` for a new file. A ``reader`` leaves both alone: setting
    auto-vacuum, even to the value it has, counts as a commit in every other connection's
    ``data_version``, which the store would take for another process's write."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout, check_same_thread=False)
    try:
        if not reader:
            # both only take effect on a new file; auto-vacuum lets purges give space back
            conn.execute(f"PRAGMA page_size={page_size:d}")  # before WAL: that writes the file's header
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def _as_store_error(exc: BaseException) -> BaseException:
    if isinstance(exc, StoreError) or not isinstance(exc, Exception):
        return exc
    err = StoreUnavailable(f"database error: {exc}")
    err.__cause__ = exc
    return err


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    done: Done
    read_only: bool = False  # run outside any transaction: no write lock, no commit


_STOP = object()


def _answer_on(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], on_commit: Callable[[Any], None] | None
) -> Done:
    def done(result: Any, exc: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_resolve, future, result, exc, on_commit)

    return done


def _resolve(
    future: asyncio.Future[Any],
    result: Any,
    exc: BaseException | None,
    on_commit: Callable[[Any], None] | None,
) -> None:
    if exc is None and on_commit is not None:
        on_commit(result)  # even when the caller was cancelled: the change stands, so its events must too
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


class GroupCommitWriter:
    """Runs write jobs on one connection, many per transaction, answering each after the commit."""

    def __init__(
        self,
        connect_fn: Callable[[], sqlite3.Connection],
        *,
        max_batch: int = 1024,
        after_commit: Callable[[], None] | None = None,
        lock_path: str | None = None,
        lock_timeout: float = 10.0,
    ) -> None:
        self._connect = connect_fn
        self._lock_path = lock_path  # the database's: ``WriteLock`` keeps other processes' writers out
        self._lock: WriteLock | None = None
        self._lock_timeout = lock_timeout  # the database's busy timeout: how long a writer waits
        self._max_batch = max_batch
        # on the writer thread, once a commit that changed rows is visible to others (one that changed
        # none, a claim that found nothing due, say, has nothing to tell them), with the write lock held
        self._after_commit = after_commit
        self._jobs: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._gate = threading.Lock()  # orders enqueue against closing
        self._closed = True
        self.commits = 0  # transactions committed (tests and benchmarks read it)

    async def start(self, name: str) -> None:
        self._closed = False
        self._thread = threading.Thread(target=self._main, name=f"sqlite-writer:{name}", daemon=True)
        self._thread.start()
        await asyncio.to_thread(self._ready.wait)
        if self._start_error is not None:
            raise _as_store_error(self._start_error)

    async def stop(self) -> None:
        """Finish every job already queued, refuse new ones, then close the connection."""
        with self._gate:
            if self._closed:
                thread, self._thread = self._thread, None
            else:
                self._closed = True
                self._jobs.put(_STOP)
                thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join)

    def enqueue(
        self, fn: Callable[[sqlite3.Connection], Any], done: Done, *, read_only: bool = False
    ) -> None:
        """Queue a job from any thread; ``done`` is called on the writer thread after the commit."""
        with self._gate:
            if not self._closed:
                self._jobs.put(_Job(fn, done, read_only))
                return
        done(None, StoreUnavailable("the store is closed"))

    async def run(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        on_commit: Callable[[T], None] | None = None,
        read_only: bool = False,
    ) -> T:
        """Run ``fn`` in a write transaction; return its result once the transaction is durable.

        ``on_commit`` runs on the event loop after the commit even if the caller was cancelled meanwhile.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self.enqueue(fn, _answer_on(loop, future, on_commit), read_only=read_only)
        return await future

    def _main(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:  # reported to start(); the thread has nothing else to do
            self._start_error = exc
            self._closed = True
            self._ready.set()
            return
        if self._lock_path is not None:  # the database exists now, and so does its directory
            self._lock = WriteLock(self._lock_path, timeout=self._lock_timeout)
        self._ready.set()
        try:
            self._serve(conn)
        except BaseException:
            logging.getLogger(__name__).exception("sqlite writer thread failed")
        finally:
            with self._gate:
                self._closed = True
            conn.close()
            if self._lock is not None:
                self._lock.close()
            self._fail_leftovers()

    def _serve(self, conn: sqlite3.Connection) -> None:
        while True:
            first = self._jobs.get()
            if first is _STOP:
                return
            batch = [first]
            stopping = False
            while len(batch) < self._max_batch:
                try:
                    nxt = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                batch.append(nxt)
            jobs = [job for job in batch if isinstance(job, _Job)]
            for job in jobs:
                if job.read_only:
                    self._run_read(conn, job)
            self._run_batch(conn, [job for job in jobs if not job.read_only])
            if stopping:
                return

    def _fail_leftovers(self) -> None:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if isinstance(job, _Job):
                _call(job.done, None, StoreUnavailable("the store is closed"))

    @staticmethod
    def _run_read(conn: sqlite3.Connection, job: _Job) -> None:
        try:
            result = job.fn(conn)
        except Exception as exc:
            _call(job.done, None, _as_store_error(exc))
        else:
            _call(job.done, result, None)

    def _announce_commit(self) -> None:
        """The after-commit hook, whose failure must not undo what the commit made durable: its callers
        are answered all the same."""
        assert self._after_commit is not None
        try:
            self._after_commit()
        except Exception:
            logging.getLogger(__name__).exception("after-commit hook failed")

    def _take_lock(self) -> None:
        if self._lock is None:
            return
        try:
            self._lock.acquire()
        except StoreError:  # held past the busy timeout (StoreUnavailable is an OSError too)
            raise
        except OSError:  # no flock here (some network file systems): SQLite's own lock, as before
            logging.getLogger(__name__).warning("no write lock on %s; SQLite's alone", self._lock_path)
            self._lock.close()
            self._lock = None

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        if not batch:
            return
        answers: list[tuple[_Job, Any, BaseException | None]] = []
        changes = conn.total_changes
        try:
            self._take_lock()
        except StoreError as exc:  # another process's writer held it past the busy timeout
            for job in batch:
                _call(job.done, None, exc)
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                conn.execute("SAVEPOINT job")
                try:
                    result = job.fn(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO job")
                    answers.append((job, None, _as_store_error(exc)))
                else:
                    answers.append((job, result, None))
                conn.execute("RELEASE job")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:  # the transaction as a whole failed: nobody's change was made
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            for job in batch:
                _call(job.done, None, _as_store_error(exc))
            return
        else:
            self.commits += 1
            if self._after_commit is not None and conn.total_changes != changes:
                self._announce_commit()  # still under the write lock: one writer rings at a time
        finally:
            if self._lock is not None:
                self._lock.release()
        for job, result, error in answers:
            _call(job.done, result, error)


def _call(done: Done, result: Any, exc: BaseException | None) -> None:
    try:
        done(result, exc)
    except Exception:  # a broken callback must not kill the writer and strand every later caller
        logging.getLogger(__name__).exception("sqlite writer callback failed")


class ReaderPool:
    """Read-only snapshots on a few threads, each with its own connection."""

    def __init__(self, connect_fn: Callable[[], sqlite3.Connection], *, threads: int = 2) -> None:
        self._connect = connect_fn
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sqlite-reader")

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            raise _as_store_error(exc) from exc
        finally:
            conn.execute("COMMIT")

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on a consistent snapshot of the database."""
        loop = asyncio.get_running_loop()
        try:
            pending = loop.run_in_executor(self._pool, self._read, fn)
        except RuntimeError as exc:  # the pool was shut down
            raise StoreUnavailable("the store is closed") from exc
        return await pending

    async def stop(self) -> None:
        await asyncio.to_thread(self._pool.shutdown, True)
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
