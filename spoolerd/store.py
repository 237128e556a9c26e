"""The message store contract: what every store provider implements and the spooler relies on.

It follows IMsgStore / IMessage as the MAPI spooler uses them (DESIGN §2-§3):

- folders with roles; messages created, saved, opened (READ / MODIFY / BEST), moved and deleted, with
  byte-exact RFC 5322 content and recipients that carry their own delivery state;
- ``submit`` puts a message on the outgoing queue (SUBMIT + UNSENT, responsibility FALSE on every
  recipient, client submit time); from then on only the spooler changes it and a client may only read it
  (``open`` with MODIFY → ``Submitted``) or ``abort_submit`` it; ``submit_new`` creates and queues a
  message in one transaction;
- the spooler takes a message with ``lock`` (a lease: owner + expiry, so a crashed spooler's locks
  expire), records per-recipient outcomes, and either ``unlock``s it with a retry time or ``finish``es
  it (sentmail / delete table);
- ``deliver`` files inbound mail into the receive folder picked by longest message-class prefix, with
  the downloading transport's memory of it (``StateChange``) in the same transaction;
- ``oldest`` / ``purge`` let Sent Items (or any folder) be kept for a limited time;
- every state change is durable before the call returns, and queue changes / new mail are announced
  through ``subscribe()`` so the spooler never polls.

Errors are the ``StoreError`` family in ``spoolerd.errors``.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from .events import StoreEvent, Subscription
from .message import (
    Access,
    Delivery,
    Draft,
    Folder,
    FolderRole,
    InboundMessage,
    Message,
    MessageSummary,
    NewRecipient,
    QueueEntry,
    RecipientUpdate,
    StateChange,
)

__all__ = [
    "STORE_METHODS",
    "Claiming",
    "Clock",
    "MessageStore",
    "QueueCounter",
    "QueuedRecipients",
    "StoreContext",
    "StoreProvider",
    "lease_daemon",
]

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class StoreContext:
    """What the daemon tells a store provider besides its own settings."""

    name: str  # the store's name in the config ([stores.NAME])
    state_dir: Path  # relative paths in a store's settings are taken from here
    clock: Clock = field(default=time.time)


def lease_daemon(lock_owner: str) -> str:
    """The daemon a lease belongs to: its owner name without a sub-owner's ``#...`` suffix (see
    ``MessageStore.reclaim``)."""
    return lock_owner.split("#", 1)[0]


@runtime_checkable
class MessageStore(Protocol):
    """One mailbox: folders and messages, an outgoing queue, receive folders and events."""

    name: str
    can_queue: bool  # False: a receive-only store (e.g. an archive); it cannot be the default store

    async def start(self) -> None:
        """Open the backing storage (creating or migrating it) and start announcing external changes.
        A provider may also offer ``check(self) -> None``: can it start (files and directories writable)?
        It raises ConfigError with ``key: problem`` lines; check-config, run and a reload call it."""

    async def stop(self) -> None:
        """Finish pending writes and release the backing storage; subscribers' streams end."""

    # folders
    async def folders(self) -> list[Folder]: ...
    async def folder(self, role: FolderRole) -> Folder: ...
    async def create_folder(self, name: str, parent_id: str | None = None) -> Folder: ...

    # messages
    async def create_message(self, folder_id: str, draft: Draft) -> str:
        """Create a message and return its id (opaque and stable for the message's life)."""

    async def save(self, message_id: str, draft: Draft) -> None:
        """Replace a message's properties, recipients and content (``Submitted`` while queued)."""

    async def open(self, message_id: str, access: Access = Access.READ) -> Message:
        """A snapshot of the message; MODIFY on a queued message → ``Submitted``; BEST → read-only;
        any open of a message locked by the spooler → ``NoAccess``."""

    async def list_messages(self, folder_id: str) -> list[MessageSummary]: ...
    async def move(self, message_id: str, folder_id: str) -> None: ...
    async def delete(self, message_id: str) -> None: ...

    # retention: a message's age in a folder counts from when it was filed there (created, delivered,
    # moved, or filed as a sent copy by ``finish``); queued messages are never purged
    async def oldest(self, folder_id: str) -> float | None:
        """When the message that has been in the folder longest was filed there, on the store's clock
        (None: no message that ``purge`` could delete)."""

    async def purge(self, folder_id: str, older_than: float) -> int:
        """Delete every message that is not queued and was filed in the folder before ``older_than`` (a
        time on the store's clock); return how many. Each batch is one durable transaction (a crash
        part-way leaves the rest for the next purge), and the space is given back where it can be."""

    # the outgoing queue (client side)
    async def submit(
        self, message_id: str, *, preprocess: bool = False, lock: tuple[str, float] | None = None
    ) -> None:
        """Queue the message (``NoRecipients`` if it has none, leaving it unchanged). ``lock=(owner,
        lease)`` queues it already locked, in the same step: how a tightly coupled store keeps its own
        transport's recipients away from the spooler while it hands them over inside submit."""

    async def submit_new(
        self, folder_id: str, draft: Draft, *, preprocess: bool = False, lock: tuple[str, float] | None = None
    ) -> str:
        """``create_message`` and ``submit`` in one transaction: return the new message's id once it is
        durably queued; after a crash there is a queued message or none (never an unsent draft).
        ``NoRecipients`` (a draft without recipients) leaves nothing behind. ``preprocess`` and
        ``lock`` as for ``submit``. ``create_message`` then ``submit`` stays for clients that build
        a draft first (MAPI's SaveChanges, then SubmitMessage)."""

    async def abort_submit(self, message_id: str) -> None:
        """Take the message off the queue: ``NotInQueue`` / ``UnableToAbort`` (locked)."""

    async def hold(self, message_id: str, held: bool = True) -> None:
        """Keep a queued message from being sent (``held=False`` releases it); ``NotInQueue`` if it is
        not queued. A held message stays queued: never due, skipped by every flush, still abortable."""

    # the outgoing queue (spooler side)
    def outgoing_queue(
        self, *, due_at: float | None = None, include_locked: bool = True
    ) -> AsyncIterator[QueueEntry]:
        """Queued messages in ascending client submit time, read in pages (memory does not grow with
        the queue). ``due_at``: only messages due by then, in ascending due time (the due head: read
        from a due index, so it costs the same however many messages wait for later);
        ``include_locked=False`` skips live locks."""

    async def next_due(self) -> float | None:
        """The earliest due time among queued messages that are not locked (None: nothing waits)."""

    async def lock(self, message_id: str, owner: str, lease: float) -> Message:
        """Take the message's lease (SUBMITFLAG_LOCKED); an expired lease may be taken over.
        ``NoAccess`` if another owner's lease is live, ``NotInQueue`` if it is not queued."""

    async def renew(self, message_id: str, owner: str, lease: float) -> None: ...

    async def unlock(self, message_id: str, owner: str, *, retry_at: float | None = None) -> None:
        """Release the lease, leaving the message queued; ``retry_at`` schedules its next attempt."""

    async def postpone(self, message_ids: Sequence[str], until: float) -> int:
        """Make the queued, unlocked, unheld messages among ``message_ids`` that are due before ``until``
        due then (a deferred send time later still is kept), in one statement; return how many. Ids
        not found or not queued are passed over. The spooler's: a destination held again, for its
        waiting messages. Nothing comes due sooner, so nobody is woken."""

    async def reclaim(self, owner: str) -> int:
        """Release every lease held by ``owner`` or by one of its sub-owners (``owner + "#..."``), live
        or not, leaving those messages queued and due as they were; return how many. A restarted daemon
        calls it at start with its stable owner name: what its previous life held when it died is taken
        back at once instead of at lease expiry. Another owner's leases are never touched."""

    async def complete_preprocessing(
        self,
        message_id: str,
        owner: str,
        *,
        content: bytes | None = None,
        recipients: Sequence[NewRecipient] | None = None,
    ) -> Message:
        """Save what the preprocessors changed and clear SUBMITFLAG_PREPROCESS (the spooler's
        re-submit). Recipients may be replaced only while none has an outcome yet."""

    async def record_outcomes(
        self,
        message_id: str,
        owner: str,
        updates: Sequence[RecipientUpdate],
        *,
        delay_reported: bool = False,
    ) -> None:
        """Record per-recipient results of one attempt; a final state is never overwritten.
        ``delay_reported`` marks the submission as warned about (cleared by the next submit)."""

    async def finish(self, message_id: str, owner: str, *, outcomes: Sequence[RecipientUpdate] = ()) -> None:
        """FinishedMsg: record ``outcomes`` (as ``record_outcomes`` would, in the same transaction), take
        the message off the queue and unlock it, then sentmail → move there, delete_after_submit →
        delete, both → move then delete, neither → leave it."""

    # inbound
    async def deliver(self, message: InboundMessage, *, state: StateChange | None = None) -> Delivery:
        """File ``message`` in its receive folder; ``state`` (what the downloading transport remembers
        about it) commits in the same transaction, so a crash never keeps one without the other."""

    # a transport's memory (``StateChange``)
    async def transport_state(self, transport: str, prefix: str = "") -> dict[str, bytes]:
        """Every key the transport keeps here that starts with ``prefix``, with its value."""

    async def set_transport_state(self, change: StateChange) -> None: ...
    async def receive_folder(self, message_class: str) -> Folder: ...
    async def set_receive_folder(self, message_class: str, folder_id: str | None) -> None: ...
    async def receive_folders(self) -> dict[str, str]: ...

    # events
    def subscribe(
        self, limit: float = math.inf, accept: Callable[[StoreEvent], bool] | None = None
    ) -> Subscription[StoreEvent]:
        """Queue changes and new mail from now on; ``accept`` filters before anything is queued."""


STORE_METHODS: tuple[str, ...] = tuple(
    name for name, value in vars(MessageStore).items() if callable(value) and not name.startswith("_")
)


@dataclass(frozen=True, slots=True)
class QueuedRecipients:
    """One queued message's recipients as a count: those without a final outcome (``waiting``), and
    whether it is ``deferred`` (a retry was scheduled, or one of them was tried)."""

    message_id: str
    waiting: int
    deferred: bool


@runtime_checkable
class QueueCounter(Protocol):
    """An optional store ability: what ``open`` would tell of every queued message's recipients, in one
    read. The metrics count a queue with it when they start (``spoolerd.metrics``); a store without it
    is counted by opening each queued message, which is much slower at a large queue."""

    async def queued_recipients(self) -> list[QueuedRecipients]: ...


@runtime_checkable
class Claiming(Protocol):
    """An optional store ability: take the due head's leases in batches. The spooler claims with it
    (one transaction for many messages instead of a read of the due head and a ``lock`` for each), and
    several daemons on one store then take disjoint batches instead of racing for the same head; a
    store without it is served by ``outgoing_queue(due_at=now)`` and ``lock``."""

    async def claim(self, owner: str, lease: float, limit: int) -> list[Message]:
        """Lock up to ``limit`` messages that are due now, earliest due first, as ``lock`` would lock
        each: queued, not held, due (``due_at`` reached), and unlocked or under a lease that is over
        (``owner``'s own live leases are not taken again: those attempts are under way); a row another
        spooler is claiming at this moment is passed over, never waited for. Returns them loaded, as
        ``lock`` returns one, in due order; ``[]`` when nothing is due."""


class StoreProvider(Protocol):
    """What an entry point in ``spoolerd.stores`` names: a class built from its own settings model."""

    Settings: ClassVar[type[BaseModel]]

    def __call__(self, settings: Any, context: StoreContext) -> MessageStore: ...
