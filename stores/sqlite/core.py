"""What every part of the SQLite store works with: its writer, its readers, its clock and its events.

The store's methods live in one module per concern (``messages``, ``queue``, ``leases``, ``outcomes``,
``inbound``), each a class over this core; ``store.SqliteStore`` puts them together with the life cycle.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from functools import partial

from spoolerd.events import EventHub, QueueChanged, StoreEvent
from spoolerd.store import Clock

from .engine import GroupCommitWriter, ReaderPool, connect
from .settings import SqliteSettings

__all__ = ["SqliteCore"]


class SqliteCore:
    """A SQLite store's state: one group-commit writer and a pool of readers on one database file."""

    def __init__(self, name: str, path: str, settings: SqliteSettings, clock: Clock) -> None:
        self.name = name
        self.path = path
        self._settings = settings
        self._clock = clock
        self._hub: EventHub[StoreEvent] = EventHub()

        def open_connection(reader: bool = False) -> sqlite3.Connection:
            conn = connect(
                path, busy_timeout=settings.busy_timeout, reader=reader, page_size=settings.page_size
            )
            conn.row_factory = sqlite3.Row  # columns by name: stores.common.rows
            return conn

        self._writer = GroupCommitWriter(
            open_connection,
            max_batch=settings.max_batch,
            after_commit=self._after_commit,
            lock_path=path,
            lock_timeout=settings.busy_timeout,
        )
        self._readers = ReaderPool(partial(open_connection, reader=True), threads=settings.reader_threads)

    def _after_commit(self) -> None:
        """On the writer thread, after each commit (the store rings its doorbell here)."""

    def _announce(self, reason: str, message_id: str | None) -> Callable[[object], None]:
        """A writer job's ``on_commit``: tell subscribers the queue changed, once the change is durable."""
        event = QueueChanged(self.name, reason, message_id)
        return lambda _result: self._hub.publish(event)
