"""One writer at a time across processes, waiting at most a millisecond past each release.

Several processes write one store: a daemon and its delivery workers (``[spooler] workers``), two daemons
on one file, ``spoolerd-sendmail`` queueing directly. SQLite lets one of them hold the write lock and
makes the others retry: its busy handler sleeps 1, 2, 5, 10 ... 100 ms between tries, so a writer that
arrives just after another began waits milliseconds after the lock came free (a 250 that should take
2 ms took 30 to 110 with two processes). So every group-commit writer first takes ``<db>-write.lock``
with ``flock``, and holds SQLite's lock only while it holds this one.

The lock is advisory: a writer that does not take it (the sqlite3 shell, an older spoolerd) is still
kept out by SQLite's own lock and its busy timeout. The file is opened read-write, else read-only (flock
needs neither); one that cannot be opened at all means going without it, as such a writer does, with a
warning. A process that dies holding it lets go with its last descriptor. The wait is bounded like
SQLite's (``busy_timeout``): a holder that is stopped (a debugger, SIGSTOP) makes the others' writes fail
with ``StoreUnavailable`` after it, never hang. Within that bound a waiter that finds the lock taken
looks again after 0.1 ms, doubling to at most 1 ms (a wait of a few ms, never an idle loop: it happens
only while another writer holds the lock).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time

from spoolerd.errors import StoreUnavailable

__all__ = ["WriteLock", "write_lock_path"]

_FIRST_WAIT = 0.0001
_LONGEST_WAIT = 0.001


def write_lock_path(db_path: str) -> str:
    return db_path + "-write.lock"


class WriteLock:
    """``flock`` on the store's lock file, taken around each write transaction (on the writer thread:
    its waits release the GIL)."""

    def __init__(self, db_path: str, *, timeout: float) -> None:
        self._timeout = timeout
        self._fd: int | None = None
        path = write_lock_path(db_path)
        problem: OSError | None = None
        for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
            try:
                self._fd = os.open(path, flags | os.O_CLOEXEC, 0o660)
            except OSError as exc:
                problem = exc
            else:
                break
        if self._fd is None:
            logging.getLogger(__name__).warning("no write lock (%s); SQLite's own lock alone", problem)

    def acquire(self) -> None:
        """Take the lock, waiting at most the timeout for another process's writer to let it go."""
        if self._fd is None:
            return
        deadline, wait = time.monotonic() + self._timeout, _FIRST_WAIT
        while not self._try():
            if time.monotonic() >= deadline:
                raise StoreUnavailable(f"the store's write lock stayed taken for {self._timeout:g} s")
            time.sleep(wait)
            wait = min(wait * 2, _LONGEST_WAIT)

    def _try(self) -> bool:
        assert self._fd is not None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            return False
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
