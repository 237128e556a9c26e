"""A message store in PostgreSQL, shared by every daemon pointed at the same database and schema.

Each method is one transaction on a pooled connection (concurrent finishes share one: ``finishes``) and
returns only after it committed. A message's lease is its row's ``lock_owner`` / ``lock_expiry``: the
row is locked ``FOR UPDATE`` while a transaction decides, and ``lock`` uses ``SKIP LOCKED`` so a daemon
never waits for another that is claiming the same message: it is told ``NoAccess`` at once and moves on.
Transactions that change the queue or file new mail NOTIFY the schema's channel once; the other daemons'
listeners turn that into a ``QueueChanged`` event.

The methods live in one module per concern, as in the SQLite store: ``messages`` (folders, messages,
retention), ``queue`` (submit, abort, hold, the queue in submit order; the queueing rule is
``stores.common``), ``leases``, ``outcomes`` (preprocessing, per-recipient outcomes, finish) and
``inbound`` (delivery, receive folders, the transports' memory), ``outbox`` (the webhooks' events); this
module starts and stops the store.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

from pydantic import BaseModel

from spoolerd.events import QueueChanged, StoreEvent, Subscription
from spoolerd.store import StoreContext

from .db import Database
from .finishes import FinishGroup
from .inbound import PostgresInbound
from .leases import PostgresLeases
from .messages import PostgresMessages
from .outbox import PostgresOutbox
from .outcomes import PostgresOutcomes
from .queue import PostgresQueue
from .settings import PostgresSettings, read_password
from .watch import Listener

__all__ = ["PostgresStore"]


class PostgresStore(
    PostgresMessages, PostgresQueue, PostgresLeases, PostgresOutcomes, PostgresInbound, PostgresOutbox
):
    """A ``MessageStore`` kept in one schema of a PostgreSQL database."""

    Settings: ClassVar[type[BaseModel]] = PostgresSettings
    can_queue: ClassVar[bool] = True

    def __init__(self, settings: PostgresSettings, context: StoreContext) -> None:
        super().__init__(context.name, settings, context.state_dir, context.clock)
        self._listener: Listener | None = None

    # ------------------------------------------------------------------ life cycle

    def check(self) -> None:
        """Before start: the password file, if one is named, can be read."""
        read_password(self._settings, self._state_dir)

    async def start(self) -> None:
        db = Database(self._settings, read_password(self._settings, self._state_dir))
        await db.open()
        self._db = db
        self._finishes = FinishGroup(db)
        self._listener = Listener(db.connect, db.channel, db.instance, self._external, store=self.name)
        try:
            await self._listener.start()
        except BaseException:
            self._listener = None
            await db.close()
            self._db = self._finishes = None
            raise

    async def stop(self) -> None:
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        if self._finishes is not None:
            await self._finishes.close()  # answers the finishes under way before the pool closes
            self._finishes = None
        if self._db is not None:
            await self._db.close()
            self._db = None
        self._hub.close()

    @property
    def commits(self) -> int:
        """Write transactions committed so far."""
        return 0 if self._db is None else self._db.transactions

    # ------------------------------------------------------------------ events

    def subscribe(
        self, limit: float = math.inf, accept: Callable[[StoreEvent], bool] | None = None
    ) -> Subscription[StoreEvent]:
        return self._hub.subscribe(limit, accept)

    def _external(self, reason: str) -> None:
        """Another daemon changed the queue; a finish of theirs is a finish (nothing for our spooler to
        do, but our Sent Items keeper and watchers see it), anything else ``external``."""
        self._hub.publish(QueueChanged(self.name, "finish" if reason == "finish" else "external"))
