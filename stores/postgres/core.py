"""What every part of the PostgreSQL store works with: its database, its clock and its events.

The store's methods live in one module per concern (``messages``, ``queue``, ``leases``, ``outcomes``,
``inbound``), each a class over this core; ``store.PostgresStore`` puts them together with the life cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from spoolerd.errors import StoreUnavailable
from spoolerd.events import EventHub, QueueChanged, StoreEvent
from spoolerd.store import Clock

from .db import Database, Transaction
from .finishes import FinishGroup
from .settings import PostgresSettings

__all__ = ["PostgresCore"]

T = TypeVar("T")


class PostgresCore:
    """A PostgreSQL store's state: its connection pool, once started."""

    def __init__(self, name: str, settings: PostgresSettings, state_dir: Path, clock: Clock) -> None:
        self.name = name
        self._settings = settings
        self._state_dir = state_dir
        self._clock = clock
        self._hub: EventHub[StoreEvent] = EventHub()
        self._db: Database | None = None
        self._finishes: FinishGroup | None = None  # with ``_db``: the finishes gathered into batches

    def _database(self) -> Database:
        if self._db is None:
            raise StoreUnavailable(f"store {self.name} is not started")
        return self._db

    def _finishing(self) -> FinishGroup:
        if self._finishes is None:
            raise StoreUnavailable(f"store {self.name} is not started")
        return self._finishes

    async def _changed(self, body: Transaction[T], reason: str, message_id: str | None) -> T:
        """Run a transaction that changes the queue, wake the other daemons, then tell our subscribers."""
        result = await self._database().run(body, notify=True)
        self._hub.publish(QueueChanged(self.name, reason, message_id))
        return result
