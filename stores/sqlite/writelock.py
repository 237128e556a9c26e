"""One writer at a time across processes, in the kernel's queue instead of SQLite's busy loop.

Several processes write one store: a daemon and its delivery workers (``[spooler] workers``), two daemons
on one file, ``spoolerd-sendmail`` queueing directly. SQLite lets one of them hold the write lock and
makes the others retry: its busy handler sleeps 1, 2, 5, 10 ... 100 ms between tries, so a writer that
arrives just after another began waits milliseconds after the lock came free (a 250 that should take
2 ms took 30 to 110 with two processes). So every group-commit writer first takes ``<db>-write.lock``
with ``flock``: a waiting writer sleeps in the kernel and is woken the moment the holder lets go.

The lock is advisory: a writer that does not take it (the sqlite3 shell, an older spoolerd) is still
kept out by SQLite's own lock and its busy timeout. A lock file that cannot be opened (another user's,
read-only) means going without it, as such a writer does. A process that dies holding it lets go with
its last descriptor; one that stops mid-transaction holds the others up, as it would hold SQLite's lock.
"""

from __future__ import annotations

import fcntl
import os

__all__ = ["WriteLock", "write_lock_path"]


def write_lock_path(db_path: str) -> str:
    return db_path + "-write.lock"


class WriteLock:
    """``flock`` on the store's lock file, taken around each write transaction (on the writer thread:
    the wait releases the GIL)."""

    def __init__(self, db_path: str) -> None:
        self._fd: int | None
        try:
            self._fd = os.open(write_lock_path(db_path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o660)
        except OSError:
            self._fd = None  # SQLite's own lock and busy timeout still keep writers apart

    @property
    def works(self) -> bool:
        """Whether it keeps other writers out (False: its file could not be opened)."""
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
