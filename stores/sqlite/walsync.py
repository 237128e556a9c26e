"""The fsync of the loop's commits: one thread that makes the WAL durable, then has their callers answered.

``LoopWriter`` commits with ``synchronous=NORMAL`` and hands each commit's answers here. The thread takes
every commit waiting, ``fdatasync``s the WAL file once for all of them, and passes them back to the event
loop in one call. An fsync that fails answers its commits with ``StoreUnavailable``: their changes are
committed but may not be on disk, so nobody may be told they are (the next fsync, if it works, makes
them durable all the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from spoolerd.errors import StoreUnavailable

__all__ = ["WalSyncer"]

A = TypeVar("A")
Deliver = Callable[[Sequence[A], BaseException | None], None]


class WalSyncer(Generic[A]):
    """``after_sync(answers)`` from the loop; ``deliver(answers, error)`` on the loop once the WAL is
    on disk (``error`` is None) or could not be made so."""

    def __init__(self, wal_path: str, loop: asyncio.AbstractEventLoop, deliver: Deliver[A]) -> None:
        self._path = wal_path
        self._loop = loop
        self._deliver = deliver
        self._fd: int | None = None
        self._waiting: list[A] = []
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.syncs = 0  # fdatasync calls made (tests and benchmarks read it)

    def start(self, name: str) -> None:
        self._thread = threading.Thread(target=self._main, name=f"sqlite-sync:{name}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Sync and answer what is waiting, then end the thread."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def after_sync(self, answers: A) -> None:
        with self._wake:
            self._waiting.append(answers)
            self._wake.notify()

    def _main(self) -> None:
        while True:
            with self._wake:
                while not self._waiting and not self._stopping:
                    self._wake.wait()
                batch, self._waiting = self._waiting, []
                if not batch:  # stopping, nothing left
                    return
            error = self._sync()
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                self._loop.call_soon_threadsafe(self._deliver, batch, error)

    def _sync(self) -> BaseException | None:
        try:
            if self._fd is None:  # the WAL exists once anything was committed to it
                self._fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
            os.fdatasync(self._fd)
        except OSError as exc:
            err = StoreUnavailable(f"could not make the write-ahead log durable: {exc}")
            err.__cause__ = exc
            return err
        self.syncs += 1
        return None
