"""The progress line ``spoolerctl flush`` shows on a terminal while a synchronous flush runs.

The flush itself answers only when it is over, so progress is read from a second connection that
subscribes to the daemon's events: each message with a delivery event (delivered, deferred or failed)
has been tried, and each new mail downloaded counts as received. ``FlushCount`` is the pure part;
``FlushProgress`` paints it on stderr, only on a terminal and only once the flush has taken more than a
moment, and wipes it before the answer is printed, so piped output has nothing extra.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from .client import ConnectionLost, ControlClient, Refused, Unreachable

__all__ = ["FlushCount", "FlushProgress"]

ATTEMPT_EVENTS = frozenset({"delivered", "deferred", "failed"})
SHOW_AFTER = 0.5  # seconds: a flush quicker than this shows nothing
TICK = 1.0  # the elapsed time is redrawn this often when no event comes
REPAINT = 0.1  # and never more often than this, however fast the events come
BAR = 20


@dataclass(slots=True)
class FlushCount:
    """How far a flush has come: ``total`` messages expected to be tried (None: unknown)."""

    total: int | None = None
    count_received: bool = False  # a download-only flush: new mail is what it brings
    tried: set[str] = field(default_factory=set)
    received: int = 0

    def seen(self, event: dict[str, Any]) -> bool:
        """Take one event; True when it moved the count."""
        kind = event.get("type")
        message = f"{event.get('store')}/{event.get('id')}"  # ids are unique within their store
        if kind in ATTEMPT_EVENTS and message not in self.tried:
            self.tried.add(message)
            return True
        if kind == "new_mail" and self.count_received:
            self.received += 1
            return True
        return False

    def line(self, label: str, elapsed: float) -> str:
        done = len(self.tried)
        if self.count_received:
            text = f"{label}: {self.received} received"
        elif self.total:
            filled = min(BAR, BAR * done // self.total)
            bar = "#" * filled + "." * (BAR - filled)
            text = f"{label} [{bar}] {min(done, self.total)}/{self.total} messages"
        else:
            text = f"{label}: {done} message(s) tried"
        return f"{text}  {elapsed:.0f}s"


class FlushProgress:
    """Paint a ``FlushCount`` on ``stream`` while the body runs, if ``stream`` is a terminal."""

    def __init__(
        self,
        socket: str | os.PathLike[str] | None,
        count: FlushCount,
        *,
        label: str = "flushing",
        stream: TextIO | None = None,
        enabled: bool = True,
    ) -> None:
        self.socket = socket
        self.count = count
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled  # False: a flush that does not wait (--no-wait) has nothing to show
        self._changed = threading.Condition()
        self._done = False
        self._client: ControlClient | None = None
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> FlushProgress:
        if not (self.enabled and self.stream.isatty()):
            return self
        try:
            self._client = ControlClient(self.socket, timeout=5.0)
        except Unreachable:
            return self  # the flush itself will say so
        subscribed = threading.Event()
        self._threads = [
            threading.Thread(target=self._read, args=(self._client, subscribed), daemon=True),
            threading.Thread(target=self._paint, daemon=True),
        ]
        self._threads[0].start()
        subscribed.wait(5.0)  # events from before the subscription would be missed
        self._threads[1].start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._changed:
            self._done = True
            self._changed.notify_all()
        if self._client is not None:
            self._client.close()  # ends the reader's blocking read
        for thread in self._threads:
            thread.join(5.0)

    def _read(self, client: ControlClient, subscribed: threading.Event) -> None:
        try:
            for event in client.events():
                if event.get("type") == "subscribed":
                    subscribed.set()
                with self._changed:
                    if self.count.seen(event):
                        self._changed.notify_all()
        except Refused:  # events are an administrator's (a user may flush): no count to show
            with self._changed:
                self._done = True
                self._changed.notify_all()
        except (ConnectionLost, OSError, ValueError):
            pass  # closed at the end of the flush, or the daemon went away: the flush will say
        finally:
            subscribed.set()

    def _paint(self) -> None:
        start = time.monotonic()
        painted = False
        with self._changed:
            self._changed.wait_for(lambda: self._done, SHOW_AFTER)
            while not self._done:
                self.stream.write(f"\r{self.count.line(self.label, time.monotonic() - start)}\033[K")
                self.stream.flush()
                painted = True
                self._changed.wait_for(lambda: self._done, REPAINT)  # only the end cuts this short
                self._changed.wait(TICK - REPAINT)  # an event or the next second, whichever comes first
            if painted:
                self.stream.write("\r\033[K")
                self.stream.flush()
