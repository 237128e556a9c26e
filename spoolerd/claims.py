"""Leasing the due head in batches, for the stores that can (the ``Claiming`` store ability).

One claim leases as many due messages as the spooler has free slots, in one transaction, instead of a
read of the due head and a ``lock`` for each; daemons sharing a store take disjoint batches rather than
racing for the same head. A claim whose answer was lost (a connection cut at its commit) may have leased
a batch all the same: once the store answers again, the due messages leased to this spooler that no
attempt here holds are handed back at once, not left until their leases end.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .delivery import Dispatcher
from .message import Message
from .store import Claiming, MessageStore

__all__ = ["DueClaims"]


class DueClaims:
    def __init__(self, stores: Mapping[str, MessageStore], dispatcher: Dispatcher) -> None:
        # found once: the stores that claim
        self._claimers = {name: store for name, store in stores.items() if isinstance(store, Claiming)}
        self._dispatcher = dispatcher
        self._unanswered: set[str] = set()  # stores where a claim failed: its batch may be ours

    def claims(self, name: str) -> bool:
        return name in self._claimers

    def unanswered(self, name: str) -> bool:
        """A claim of ``name``'s failed: what it may have leased is due as soon as the store answers."""
        return name in self._unanswered

    async def claim(
        self, name: str, store: MessageStore, limit: int, in_flight: Callable[[str], bool]
    ) -> list[Message]:
        """Up to ``limit`` due messages of store ``name``, leased to this spooler; ``in_flight(id)``:
        an attempt here holds that message."""
        owner = self._dispatcher.owner
        if name in self._unanswered:
            ours = [
                entry.id
                async for entry in store.outgoing_queue(due_at=self._dispatcher.clock(), include_locked=True)
                if entry.lock_owner == owner
            ]
            for message_id in ours:
                if not in_flight(message_id):  # asked at each: a flush may have begun one meanwhile
                    await self._dispatcher.hand_back(store, message_id)
            self._unanswered.discard(name)
        try:
            return await self._claimers[name].claim(owner, self._dispatcher.settings.lease, limit)
        except Exception:  # a StoreError, or a store plugin's bug: its batch may be leased all the same
            self._unanswered.add(name)
            raise
