"""The embedded default message store: one SQLite database per store, in WAL mode.

Every method that changes state is one job on the group-commit writer (``engine.py``) and returns only
after its transaction is durable; reads run on reader connections against a consistent snapshot. The
methods live in one module per concern, each a plain function of a connection inside its method:

- ``messages``: folders, messages, retention;
- ``queue``: submit, abort, hold, the queue in submit order (the queueing rule: ``stores.common``);
- ``leases``: lock, renew, unlock, reclaim;
- ``outcomes``: preprocessing results, per-recipient outcomes, finish;
- ``inbound``: delivery, receive folders, the transports' memory;
- ``outbox``: the webhooks' event outbox (``spoolerd.outbox``);

and this module starts and stops the store and announces commits made by other processes.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import structlog
from pydantic import BaseModel

from spoolerd.errors import ConfigError
from spoolerd.events import QueueChanged, StoreEvent, Subscription
from spoolerd.fsutil import fsync_directory, keep_private, make_dirs_durably, unwritable
from spoolerd.store import StoreContext
from stores.common.rules import PURGE_BATCH

from . import tables
from .inbound import SqliteInbound
from .leases import SqliteLeases
from .messages import SqliteMessages
from .outbox import SqliteOutbox
from .outcomes import SqliteOutcomes
from .queue import SqliteQueue
from .schema import migrate
from .settings import SqliteSettings
from .watch import Doorbell, ExternalChangeWatcher

__all__ = ["PURGE_BATCH", "SqliteSettings", "SqliteStore"]

log = structlog.get_logger("spoolerd.store.sqlite")


class SqliteStore(SqliteMessages, SqliteQueue, SqliteLeases, SqliteOutcomes, SqliteInbound, SqliteOutbox):
    """A ``MessageStore`` kept in one SQLite database."""

    Settings: ClassVar[type[BaseModel]] = SqliteSettings
    can_queue: ClassVar[bool] = True

    def __init__(self, settings: SqliteSettings, context: StoreContext) -> None:
        path = settings.path if settings.path.is_absolute() else context.state_dir / settings.path
        super().__init__(context.name, str(path), settings, context.clock)
        self._doorbell: Doorbell | None = None
        self._watcher: ExternalChangeWatcher | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._data_version: int | None = None
        self._check_running = False
        self._check_again = False

    # ------------------------------------------------------------------ life cycle

    def check(self) -> None:
        """Before start (``spoolerd check-config``, ``run`` and a reload): the database and the directory
        that holds it (and its WAL files) can be written, or created."""
        problem = unwritable(str(Path(self.path).parent), directory=True) or unwritable(self.path)
        if problem is not None:
            raise ConfigError([f"path: {problem}"])

    async def start(self) -> None:
        await asyncio.to_thread(make_dirs_durably, str(Path(self.path).parent))
        created = not await asyncio.to_thread(os.path.exists, self.path)
        await asyncio.to_thread(self._keep_private)
        self._loop = asyncio.get_running_loop()
        self._doorbell = await asyncio.to_thread(Doorbell, self.path)
        await self._writer.start(self.name)
        await self._writer.run(migrate)
        if await self._writer.run(tables.enable_incremental_vacuum, read_only=True):
            log.info("store rebuilt so that purges give space back", store=self.name, path=self.path)
        if created:
            await asyncio.to_thread(fsync_directory, self.path)
        # watch first, then take the baseline: a commit in between shows as a change, never goes missing
        self._watcher = ExternalChangeWatcher(self.path, self._on_external_wake)
        self._watcher.start()
        self._data_version = await self._writer.run(tables.data_version, read_only=True)

    def _keep_private(self) -> None:
        """The database made (empty: SQLite takes it for a new one) or kept unreadable by other users, and
        its WAL files, which SQLite makes with the database's permissions, kept so too."""
        keep_private(self.path)
        beside = os.path.realpath(self.path)  # SQLite puts them beside the database a link points to
        for suffix in ("-wal", "-shm"):
            keep_private(beside + suffix, create=False)

    async def stop(self) -> None:
        if self._watcher is not None:
            await asyncio.to_thread(self._watcher.stop)
            self._watcher = None
        await self._writer.stop()
        await self._readers.stop()
        if self._doorbell is not None:
            self._doorbell.close()
            self._doorbell = None
        self._hub.close()

    async def __aenter__(self) -> SqliteStore:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def commits(self) -> int:
        """Write transactions committed so far (group commit makes this smaller than the writes)."""
        return self._writer.commits

    # ------------------------------------------------------------------ events

    def subscribe(
        self, limit: float = math.inf, accept: Callable[[StoreEvent], bool] | None = None
    ) -> Subscription[StoreEvent]:
        return self._hub.subscribe(limit, accept)

    def _after_commit(self) -> None:  # writer thread, after each commit
        if self._doorbell is not None:
            self._doorbell.ring()

    def _on_external_wake(self) -> None:  # watcher thread
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._check_external)

    def _check_external(self) -> None:
        # data_version on the writer's connection moves only when *another* connection committed.
        if self._check_running:
            self._check_again = True
            return
        self._check_running = True
        loop = self._loop
        assert loop is not None

        def answered(version: Any, exc: BaseException | None) -> None:  # writer thread
            if not loop.is_closed():
                loop.call_soon_threadsafe(self._external_checked, version, exc)

        self._writer.enqueue(tables.data_version, answered, read_only=True)

    def _external_checked(self, version: int | None, exc: BaseException | None) -> None:
        self._check_running = False
        if exc is not None:  # e.g. a busy moment; look again (unless the store is closing)
            self._check_again = self._watcher is not None
        elif version is not None and version != self._data_version:
            self._data_version = version
            self._hub.publish(QueueChanged(self.name, "external"))
        if self._check_again:
            self._check_again = False
            self._check_external()
