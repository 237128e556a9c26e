"""Messages waiting for a dead destination, so that holding it again moves them in one statement.

A message whose every deferral in an attempt came from one held destination (deferred without a try,
``limits``) waits for that destination: it is due when the hold ends. When the destination fails again
then (whichever message tried it first), its hold is renewed for longer (``DestinationCache``) and every
message waiting for it is postponed to the new end together (``MessageStore.postpone``, one statement a
store), instead of each being locked, found held and unlocked again: a dead relay costs an attempt or a
few per hold, not one per queued message. Kept in memory only: after a restart, the first pass over the
queue finds the waiting messages again.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..store import MessageStore
from ..transport import OutcomeKind, Tried

__all__ = ["Holds", "waits_for"]


def waits_for(tried: Mapping[int, Tried], held: Mapping[int, str]) -> str | None:
    """The held destination that every deferred recipient waits for, if there is exactly one."""
    deferred = [i for i, t in tried.items() if t.outcome.kind is OutcomeKind.DEFERRED]
    keys = {held.get(i) for i in deferred}
    if len(keys) != 1:
        return None
    (key,) = keys
    return key


class Holds:
    """Held destination -> store -> the messages waiting for it."""

    def __init__(self) -> None:
        self._waiting: dict[str, dict[str, set[str]]] = {}
        self._key_of: dict[tuple[str, str], str] = {}  # (store, message) -> what it waits for
        self._stores: dict[str, MessageStore] = {}

    def wait(self, store: MessageStore, message_id: str, key: str | None) -> None:
        """What the message waits for after its attempt (``None``: no held destination, or done)."""
        where = (store.name, message_id)
        old = self._key_of.pop(where, None)
        if old is not None:
            self._waiting[old][store.name].discard(message_id)
        if key is not None:
            self._stores[store.name] = store
            self._waiting.setdefault(key, {}).setdefault(store.name, set()).add(message_id)
            self._key_of[where] = key

    def waiting(self, key: str) -> list[tuple[MessageStore, list[str]]]:
        """Each store's messages waiting for ``key``."""
        stores = self._waiting.get(key, {})
        return [(self._stores[name], sorted(ids, key=int)) for name, ids in stores.items() if ids]

    def destinations(self) -> list[str]:
        return list(self._waiting)

    def forget(self, key: str) -> None:
        """``key`` is up again (or forgotten): its messages wait for nothing here any more."""
        for name, ids in self._waiting.pop(key, {}).items():
            for message_id in ids:
                self._key_of.pop((name, message_id), None)
