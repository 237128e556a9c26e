"""Notice commits by other processes (e.g. ``spoolerd-sendmail`` writing while the daemon runs).

A thread sleeps in ``poll()`` on an inotify descriptor watching the database directory, and the store
then asks SQLite's ``data_version`` whether another connection committed. No timer runs while nothing is
written, so an idle daemon stays asleep. Without inotify (not Linux), the thread falls back to a slow
safety re-scan, as DESIGN §3 allows.

A write to the WAL is not yet a commit: the commit becomes visible only when the writer updates the
shared-memory index after its fsync, and inotify cannot see that (it is a memory write). So every writer
rings a doorbell after each commit that changed rows: a count written to ``<db>-bell`` (see
``Doorbell``). Its event comes after the commit is visible, so the last commit of a burst is never
missed; and the count tells a process its own rings (most of them) from other writers', so its own
commits do not send it to look for changes it made itself.
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["FALLBACK_RESCAN_SECONDS", "Doorbell", "ExternalChangeWatcher", "doorbell_path"]

FALLBACK_RESCAN_SECONDS = 60.0

try:  # Linux only
    import inotify_simple
except ImportError:  # pragma: no cover - exercised on other platforms
    inotify_simple = None


_UNLOCKED = 1 << 62  # a ring by a writer without the write lock
_ALL = (1 << 64) - 1


def doorbell_path(db_path: str) -> str:
    return db_path + "-bell"


class Doorbell:
    """Rung by a writer after each commit that changed rows; costs one small write, never an fsync.

    The bell holds a count of its rings, and a writer rings it holding the store's write lock
    (writelock.py), so rings are counted one at a time: a writer that finds the count where its own last
    ring left it knows nobody else committed in between, and a watcher woken while the count is still its
    own process's last ring has nothing to look at (a commit of its own)."""

    def __init__(self, db_path: str) -> None:
        self._fd = os.open(doorbell_path(db_path), os.O_RDWR | os.O_CREAT, 0o640)

    def count(self) -> int:
        return int.from_bytes(os.pread(self._fd, 8, 0), "little")

    @staticmethod
    def next_count(after: int, *, locked: bool) -> int:
        """The count that rings once more after ``after``. A writer without the write lock may ring at
        the same moment as one with it: its count carries a flag no locked writer's has, so nobody takes
        it for theirs. No count ends in a zero byte, so an older spoolerd's ring (one zero byte) always
        changes it."""
        count = (after & ~_UNLOCKED & _ALL) + 1
        if not count & 0xFF:
            count += 1
        return (count | (0 if locked else _UNLOCKED)) & _ALL

    def ring(self, count: int) -> None:
        os.pwrite(self._fd, count.to_bytes(8, "little"), 0)

    def close(self) -> None:
        os.close(self._fd)


class ExternalChangeWatcher:
    """Calls ``on_wake`` (from its own thread) whenever the database files may have changed."""

    def __init__(self, db_path: str, on_wake: Callable[[], None]) -> None:
        self._dir = os.path.dirname(os.path.abspath(db_path)) or "."
        # the doorbell for our writers; the database and its WAL for writers that do not ring it (the
        # sqlite3 shell, say), whose commits are seen at the next wake that is not the store's own ring
        # (SqliteStore._on_external_wake), or when its next ring finds that the file's count moved
        base = os.path.basename(db_path)
        self._names = {base, base + "-wal", os.path.basename(doorbell_path(db_path))}
        self._on_wake = on_wake
        self._stop_r, self._stop_w = os.pipe()
        self._thread: threading.Thread | None = None
        self._inotify: Any = None

    def start(self) -> None:
        if inotify_simple is not None:
            flags = inotify_simple.flags
            self._inotify = inotify_simple.INotify()
            self._inotify.add_watch(self._dir, flags.MODIFY | flags.CLOSE_WRITE | flags.MOVED_TO)
        self._thread = threading.Thread(target=self._main, name="sqlite-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            os.write(self._stop_w, b"x")
            self._thread.join()
            self._thread = None
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
        os.close(self._stop_r)
        os.close(self._stop_w)

    def _main(self) -> None:
        poller = select.poll()
        poller.register(self._stop_r, select.POLLIN)
        timeout_ms: int | None = int(FALLBACK_RESCAN_SECONDS * 1000)
        if self._inotify is not None:
            poller.register(self._inotify.fileno(), select.POLLIN)
            timeout_ms = None
        while True:
            ready = poller.poll(timeout_ms)
            if any(fd == self._stop_r for fd, _ in ready):
                return
            if self._inotify is not None:
                events = self._inotify.read(timeout=0)
                overflow = inotify_simple.flags.Q_OVERFLOW
                if not any(ev.name in self._names or ev.mask & overflow for ev in events):
                    continue  # another file in the directory; an overflow may hide ours, so it counts
            self._on_wake()
