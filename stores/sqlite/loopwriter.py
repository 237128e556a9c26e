"""Write transactions run on the event loop's own thread; the fsync, and what must wait, on threads.

A job on the writer thread (``engine.GroupCommitWriter``) is cheap in CPU but dear in time on a busy
daemon: each SQLite call releases the GIL and takes it back, waiting for the event loop, which holds it up
to the switch interval, so the thread held the write lock, and every caller waited, three to four times
as long as its work took (0.46 ms of wall time per job, 0.12 of it CPU, measured under SMTP intake). Run
on the loop instead, the same jobs' COMMITs blocked it in fsync for 18% of its time (0.35 ms each).

So the two are split. The jobs that callers queue during one turn of the loop run at the start of the
next, in one ``BEGIN IMMEDIATE`` transaction on a connection of the loop's own, each in its own SAVEPOINT
(one failing job rolls back only itself), and COMMIT with ``synchronous=NORMAL`` (no fsync: a
microsecond write to the WAL). The callers are answered only once the WAL is on disk: ``WalSyncer``, a
thread, ``fdatasync``s the WAL file for every commit made since its last one (one fsync for many
transactions, taking the GIL once) and answers them together. That is ``synchronous=FULL``'s guarantee
for everything acknowledged: a sync of the whole WAL file covers its header and every frame before the
commit, and SQLite itself syncs the WAL before it copies frames into the database (a checkpoint). What
another connection sees before the sync (a commit is visible at once) it can act on only through writes
of its own, which its own sync, of the same file, makes durable first.

Nothing here waits on the loop. The write lock (``writelock.WriteLock``, its own descriptor, so that it
keeps the writer thread out as it keeps other processes out) is only tried; SQLite's busy timeout on
this connection is zero. When either is taken (another process is writing, or the thread is), the batch
goes to the writer thread, which waits for them as before (and commits with ``synchronous=FULL``). So do
read-only jobs, and jobs a caller marks ``background`` (a postpone of 100,000 rows, a purge: they would
stop the loop for as long as they run). The WAL is checkpointed by the writer thread too (1,000 pages took
31 ms here): the loop's connection never checkpoints by itself (``wal_autocheckpoint=0``) but asks the
thread for a passive checkpoint, which copies what it can without keeping writers or readers waiting,
each time the WAL file has grown by ``CHECKPOINT_GROWTH`` (SQLite's own 1,000 pages) or after
``CHECKPOINT_COMMITS`` commits (a WAL restarted from its beginning is rewritten without growing).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from spoolerd.errors import StoreError

from .engine import GroupCommitWriter, Outcome, answer_on, as_store_error, resolve, run_and_commit
from .walsync import WalSyncer
from .writelock import WriteLock

__all__ = ["CHECKPOINT_COMMITS", "CHECKPOINT_GROWTH", "LoopWriter"]

T = TypeVar("T")

# a passive checkpoint is asked for when the WAL file grew this much since the last one was asked for,
# or after this many commits (a WAL that restarted from its beginning is rewritten without growing)
CHECKPOINT_GROWTH = 4 << 20  # SQLite's own default: 1,000 pages of 4 KiB
CHECKPOINT_COMMITS = 1000
_PASSIVE_CHECKPOINT = "PRAGMA wal_checkpoint(PASSIVE)"

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    on_commit: Callable[[Any], None] | None


_Answer = tuple[_Pending, Outcome]


class LoopWriter:
    """Runs write jobs on the event loop in group commits; hands them to a writer thread when it would
    have to wait. The same interface as ``GroupCommitWriter``'s ``run``."""

    def __init__(
        self,
        path: str,
        connect_fn: Callable[[], sqlite3.Connection],
        *,
        max_batch: int = 1024,
        after_commit: Callable[[], None] | None = None,
        lock_timeout: float = 10.0,
    ) -> None:
        self._path = path
        self._connect = connect_fn
        self._thread = GroupCommitWriter(
            connect_fn,
            max_batch=max_batch,
            after_commit=after_commit,
            lock_path=path,
            lock_timeout=lock_timeout,
        )
        self._max_batch = max_batch
        self._after_commit = after_commit
        self._lock_timeout = lock_timeout
        self._conn: sqlite3.Connection | None = None
        self._lock: WriteLock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._syncer: WalSyncer[list[_Answer]] | None = None
        self._pending: list[_Pending] = []
        self._scheduled = False
        self._own_commits = 0
        self._since_checkpoint = 0
        self._wal_mark = 0  # the WAL file's size when a checkpoint was last asked for
        self.handed_over = 0  # batches the thread ran because a lock was taken (tests read it)

    @property
    def commits(self) -> int:
        """Write transactions committed, on the loop and on the thread."""
        return self._own_commits + self._thread.commits

    async def start(self, name: str) -> None:
        await self._thread.start(name)
        self._loop = asyncio.get_running_loop()
        conn = await asyncio.to_thread(self._connect)
        conn.execute("PRAGMA busy_timeout=0")  # a taken lock hands the batch over, never blocks the loop
        conn.execute("PRAGMA wal_autocheckpoint=0")  # the thread checkpoints (``_checkpoint``)
        conn.execute("PRAGMA synchronous=NORMAL")  # the syncer's fdatasync makes each commit durable
        self._conn = conn
        self._lock = WriteLock(self._path, timeout=self._lock_timeout)
        self._syncer = WalSyncer(self._path + "-wal", self._loop, _deliver)
        self._syncer.start(name)

    async def stop(self) -> None:
        """Run what is queued, then stop the thread (which finishes its own queue) and close."""
        if self._pending:
            self._drain()
        conn, self._conn = self._conn, None
        if self._syncer is not None:
            await self._syncer.stop()
            self._syncer = None
        await self._thread.stop()
        if conn is not None:
            conn.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    async def run(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        on_commit: Callable[[T], None] | None = None,
        read_only: bool = False,
        background: bool = False,
    ) -> T:
        """Run ``fn`` in a write transaction; return its result once the transaction is durable.

        ``on_commit`` runs on the event loop after the commit even if the caller was cancelled meanwhile.
        ``read_only`` jobs run outside any transaction, and ``background`` ones (long) in one, on the
        writer thread.
        """
        if read_only or background or self._conn is None:
            return await self._thread.run(fn, on_commit=on_commit, read_only=read_only)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append(_Pending(fn, future, on_commit))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._drain)
        return await future

    def read_now(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A quick read on the loop's connection, outside any transaction (``PRAGMA data_version``)."""
        if self._conn is None:
            raise StoreError("the store is closed")
        try:
            return fn(self._conn)
        except sqlite3.Error as exc:
            raise as_store_error(exc) from exc

    # ------------------------------------------------------------------ the loop's side

    def _drain(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
        if self._pending:  # more than one batch queued: the rest at the next turn
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)
        if not batch:
            return
        conn = self._conn
        if conn is None or not self._try_lock():
            self._hand_over(batch)
            return
        try:
            self._commit(conn, batch)
        finally:
            if self._lock is not None:
                self._lock.release()

    def _try_lock(self) -> bool:
        if self._lock is None:
            return True
        try:
            return self._lock.try_acquire()
        except OSError:  # no flock here (some network file systems): SQLite's own lock, as the thread does
            self._lock.close()
            self._lock = None
            return True

    def _commit(self, conn: sqlite3.Connection, batch: list[_Pending]) -> None:
        changes = conn.total_changes
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # busy: a writer without the write lock (the sqlite3 shell)
            self._hand_over(batch)
            return
        try:
            outcomes = run_and_commit(conn, [job.fn for job in batch])
        except StoreError as exc:  # the transaction as a whole failed: nobody's change was made
            for job in batch:
                resolve(job.future, None, exc, None)
            return
        self._own_commits += 1
        if self._after_commit is not None and conn.total_changes != changes:
            try:
                self._after_commit()  # the doorbell; its failure must not undo what is durable
            except Exception:
                log.exception("after-commit hook failed")
        assert self._syncer is not None
        self._syncer.after_sync(list(zip(batch, outcomes, strict=True)))  # answered once the WAL is on disk
        self._since_checkpoint += 1
        self._maybe_checkpoint()

    def _maybe_checkpoint(self) -> None:
        """On the writer thread, a passive checkpoint: 31 ms for 1,000 pages here, too long for the loop."""
        try:
            size = os.stat(self._path + "-wal").st_size
        except OSError:
            size = self._wal_mark
        if size - self._wal_mark < CHECKPOINT_GROWTH and self._since_checkpoint < CHECKPOINT_COMMITS:
            return
        self._since_checkpoint, self._wal_mark = 0, size
        self._thread.enqueue(_checkpoint, _ignore, read_only=True)

    def _hand_over(self, batch: list[_Pending]) -> None:
        """To the writer thread, which waits for the locks (bounded by the busy timeout)."""
        self.handed_over += 1
        loop = self._loop
        assert loop is not None
        for job in batch:
            self._thread.enqueue(job.fn, answer_on(loop, job.future, job.on_commit))


def _deliver(commits: Sequence[list[_Answer]], sync_error: BaseException | None) -> None:
    """On the loop, once the syncer made these commits durable (or could not)."""
    for answers in commits:
        for job, outcome in answers:
            error = outcome.error if sync_error is None else sync_error
            on_commit = job.on_commit if error is None else None
            try:
                resolve(job.future, outcome.result, error, on_commit)
            except Exception:  # one broken on_commit must not strand the other callers
                log.exception("sqlite commit callback failed")


def _checkpoint(conn: sqlite3.Connection) -> None:
    conn.execute(_PASSIVE_CHECKPOINT).fetchall()


def _ignore(result: object, exc: BaseException | None) -> None:
    if exc is not None:
        log.debug("passive checkpoint failed: %s", exc)
