"""The event outbox: an optional store ability, what delivery-event webhooks (spoolerd/webhooks/) need.

A store with it takes ``events=`` in ``record_outcomes`` and ``finish`` and writes them in the same
transaction as the outcomes they tell of, so an event exists exactly when its outcome does (a kill -9
loses neither). Each event is one row for one webhook; a webhook's sender (one per webhook and store)
reads them in the order they were written and deletes each once its endpoint took it (at least once).

With several daemons on one database, one sender per webhook sends: ``outbox_claim`` takes a lease on
the webhook's outbox (owner + expiry, like a message's lock) and ``outbox_ack`` renews it; a sender that
finds the outbox empty gives it up in the same transaction, so another daemon's new events are never
left behind. A backlog over ``keep`` loses its oldest events in the claim (the webhook's bound).

The stores of this repository have it; a daemon with ``[webhooks]`` refuses to start with a queuing
store that has not (``missing_outbox``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .message import RecipientUpdate
from .store import MessageStore

__all__ = [
    "EventOutbox",
    "OutboxClaim",
    "OutboxEvent",
    "PendingEvent",
    "finish",
    "missing_outbox",
    "record_outcomes",
]


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """An event to write for one webhook: the message it is about and the body its endpoint gets."""

    webhook: str
    message_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event in the outbox: ``seq`` orders a webhook's events as they were written."""

    seq: int
    message_id: str
    payload: bytes
    created_at: float


@dataclass(frozen=True, slots=True)
class OutboxClaim:
    """What ``outbox_claim`` found: the first events (when the lease is ours), or until when another
    owner holds it (``held_until``); how many it dropped over the bound, and how many wait."""

    events: list[PendingEvent] = field(default_factory=list)
    held_until: float | None = None
    dropped: int = 0
    backlog: int = 0


@runtime_checkable
class EventOutbox(Protocol):
    async def record_outcomes(
        self,
        message_id: str,
        owner: str,
        updates: Sequence[RecipientUpdate],
        *,
        delay_reported: bool = False,
        events: Sequence[OutboxEvent] = (),
    ) -> None:
        """``MessageStore.record_outcomes``, with ``events`` written in the same transaction."""

    async def finish(
        self,
        message_id: str,
        owner: str,
        *,
        outcomes: Sequence[RecipientUpdate] = (),
        events: Sequence[OutboxEvent] = (),
    ) -> None:
        """``MessageStore.finish``, with ``events`` written in the same transaction."""

    async def outbox_claim(
        self, webhook: str, *, owner: str, lease: float, limit: int, keep: int
    ) -> OutboxClaim:
        """In one transaction: drop the oldest of ``webhook``'s events beyond the newest ``keep``; then,
        unless ``limit`` is 0, take or renew the lease (``owner``, for ``lease`` seconds) if it is free,
        expired or ours, and read the first ``limit`` events; when there are none, give the lease up.
        ``limit`` 0 only trims and counts."""

    async def outbox_ack(self, webhook: str, seqs: Sequence[int], *, owner: str, lease: float) -> None:
        """Delete the events sent (those already gone are ignored) and renew ``owner``'s lease."""

    async def outbox_release(self, webhook: str, owner: str) -> None:
        """Give ``owner``'s lease up (a sender backing off, or stopping): another daemon may send."""


def missing_outbox(stores: dict[str, MessageStore]) -> list[str]:
    """The queuing stores that cannot keep webhook events, as ``key: problem`` lines."""
    return [
        f"stores.{name}: this store provider keeps no event outbox; [webhooks] needs one"
        for name, store in stores.items()
        if store.can_queue and not isinstance(store, EventOutbox)
    ]


async def record_outcomes(
    store: MessageStore,
    message_id: str,
    owner: str,
    updates: Sequence[RecipientUpdate],
    *,
    delay_reported: bool = False,
    events: Sequence[OutboxEvent] = (),
) -> None:
    """``store.record_outcomes``, with ``events`` when there are any (only then is the ability used)."""
    if events and isinstance(store, EventOutbox):
        await store.record_outcomes(message_id, owner, updates, delay_reported=delay_reported, events=events)
    else:
        await store.record_outcomes(message_id, owner, updates, delay_reported=delay_reported)


async def finish(
    store: MessageStore,
    message_id: str,
    owner: str,
    *,
    outcomes: Sequence[RecipientUpdate] = (),
    events: Sequence[OutboxEvent] = (),
) -> None:
    """``store.finish``, with ``events`` when there are any."""
    if events and isinstance(store, EventOutbox):
        await store.finish(message_id, owner, outcomes=outcomes, events=events)
    else:
        await store.finish(message_id, owner, outcomes=outcomes)
