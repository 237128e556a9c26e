"""Notice commits by other processes (e.g. ``spoolerd-sendmail`` writing while the daemon runs).

A thread sleeps in ``poll()`` on an inotify descriptor watching the database directory, and the store
then asks SQLite's ``data_version`` whether another connection committed. No timer runs while nothing is
written, so an idle daemon stays asleep. Without inotify (not Linux), the thread falls back to a slow
safety re-scan, as DESIGN §3 allows.

A write to the WAL is not yet a commit: the commit becomes visible only when the writer updates the
shared-memory index after its fsync, and inotify cannot see that (it is a memory write). So every writer
rings a doorbell after each commit: one byte written to ``<db>-bell`` (see ``Doorbell``). Its event comes
after the commit is visible, so the last commit of a burst is never missed.
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["FALLBACK_RESCAN_SECONDS", "SETTLE_SECONDS", "Doorbell", "ExternalChangeWatcher", "doorbell_path"]

FALLBACK_RESCAN_SECONDS = 60.0
# after a wake, events that come within this long are taken together: a busy store rings at each of its
# own commits (hundreds a second), and each wake costs a look at ``data_version`` on the writer; the
# first ring after a quiet moment still wakes at once, and no event is lost (inotify keeps them)
SETTLE_SECONDS = 0.005

try:  # Linux only
    import inotify_simple
except ImportError:  # pragma: no cover - exercised on other platforms
    inotify_simple = None


def doorbell_path(db_path: str) -> str:
    return db_path + "-bell"


class Doorbell:
    """Rung by a writer after each commit; costs one small write, never an fsync."""

    def __init__(self, db_path: str) -> None:
        self._fd = os.open(doorbell_path(db_path), os.O_WRONLY | os.O_CREAT, 0o640)

    def ring(self) -> None:
        os.pwrite(self._fd, b"\0", 0)

    def close(self) -> None:
        os.close(self._fd)


class ExternalChangeWatcher:
    """Calls ``on_wake`` (from its own thread) whenever the database files may have changed."""

    def __init__(self, db_path: str, on_wake: Callable[[], None]) -> None:
        self._dir = os.path.dirname(os.path.abspath(db_path)) or "."
        # the doorbell for our writers; the database and its WAL for writers that do not ring it (the
        # sqlite3 shell, say), whose last commit of a burst may still be seen only at the next change
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
        settle = select.poll()  # the stop pipe alone: what the wait after a wake watches
        settle.register(self._stop_r, select.POLLIN)
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
            if self._inotify is not None and settle.poll(int(SETTLE_SECONDS * 1000)):
                return  # told to stop while settling
