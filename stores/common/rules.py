"""The rules of leases and of the outgoing queue, as both dialects apply them inside their transactions.

``MessageState`` is what a transaction reads of a message before it changes its queue or lease columns
(queued, lock owner, lock expiry); its checks raise the store contract's errors. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from spoolerd.errors import LockLost, NoAccess, NoSupport, NotFound, NotInQueue, Submitted, UnableToAbort
from spoolerd.message import RecipientState, RecipientUpdate, SubmitFlag, check_time, check_wire_text

__all__ = [
    "PURGE_BATCH",
    "STATE_COLUMNS",
    "Lease",
    "MessageState",
    "check_claim",
    "check_updates",
    "due",
    "int_id",
]

PURGE_BATCH = 256  # messages a purge deletes per transaction: other writers get their turn in between


def int_id(message_id: str, what: str = "message") -> int:
    """A message's (or folder's) row id from its store id; an id that cannot be one is not found."""
    try:
        value = int(message_id)
    except (TypeError, ValueError):
        # the cause only says the text is not a number; the id in the message says it all
        raise NotFound(f"no {what} with id {message_id!r}") from None
    if value <= 0:
        raise NotFound(f"no {what} with id {message_id!r}")
    return value


def due(*times: float | None) -> float:
    """When a message is due: the latest of the times that are set (submit or retry, not_before)."""
    return max(t for t in times if t is not None)


def check_updates(updates: Sequence[RecipientUpdate]) -> None:
    """Outcomes to record, checked before the transaction."""
    for update in updates:
        RecipientState(update.state)
        check_time("next_attempt", update.next_attempt)
        for what, text in (("transport", update.transport), ("status", update.status)):
            if text is not None:
                check_wire_text(what, text)


def check_claim(owner: str, lease: float, limit: int) -> bool:
    """``claim``'s arguments, checked before the transaction; False when ``limit`` asks for none."""
    check_time("lease", lease)
    check_wire_text("lock owner", owner, allow_empty=False)
    return limit >= 1


@dataclass(frozen=True, slots=True)
class Lease:
    """A message's lease as a reader sees it at ``now``: owner and expiry while it is live, else None."""

    owner: str | None
    expiry: float | None

    @classmethod
    def of(cls, owner: str | None, expiry: float | None, now: float) -> Lease:
        """From a row's ``lock_owner`` and ``lock_expiry`` columns."""
        return cls(owner, expiry) if live(owner, expiry, now) else cls(None, None)

    def submit_flags(self, stored: int) -> SubmitFlag:
        """The stored submit flags with LOCKED set exactly while the lease is live."""
        flags = SubmitFlag(stored) & ~SubmitFlag.LOCKED
        return flags | SubmitFlag.LOCKED if self.owner is not None else flags


def live(lock_owner: str | None, lock_expiry: float | None, now: float) -> bool:
    return lock_owner is not None and lock_expiry is not None and lock_expiry > now


STATE_COLUMNS = "queued, lock_owner, lock_expiry"  # what MessageState reads


@dataclass(frozen=True, slots=True)
class MessageState:
    """A message's queue and lease columns, read (and, in PostgreSQL, row-locked) by the transaction
    that is about to change them."""

    queued: bool
    lock_owner: str | None
    lock_expiry: float | None

    @classmethod
    def of(cls, row: Any) -> MessageState:
        """From a row with ``queued``, ``lock_owner`` and ``lock_expiry`` columns."""
        return cls(bool(row["queued"]), row["lock_owner"], row["lock_expiry"])

    def locked(self, now: float) -> bool:
        """Held under a live lease."""
        return live(self.lock_owner, self.lock_expiry, now)

    def refuse_if_queued(self, now: float, verb: str) -> None:
        """A client may change a message only while it is neither locked nor queued."""
        if self.locked(now):
            raise NoAccess("the message is locked by the spooler")
        if self.queued:
            raise Submitted(f"the message is submitted and cannot be {verb}; abort the submission first")

    def require_queued(self, message_id: str) -> None:
        if not self.queued:
            raise NotInQueue(f"message {message_id} is not in the outgoing queue")

    def require_lock(self, message_id: str, owner: str) -> None:
        """The spooler changes a message only under its own lease."""
        self.require_queued(message_id)
        if self.lock_owner != owner:
            # An expired lease still held by the same owner is kept: nobody else has taken it over.
            raise LockLost(f"{owner} does not hold the lock on message {message_id}")

    def check_lockable(self, message_id: str, owner: str, now: float) -> None:
        """``lock``: queued, and not under another owner's live lease (an expired one is taken over)."""
        self.require_queued(message_id)
        if self.lock_owner != owner and self.locked(now):
            raise NoAccess(f"message {message_id} is locked by {self.lock_owner}")

    def check_abortable(self, message_id: str, now: float) -> None:
        self.require_queued(message_id)
        if self.locked(now):
            raise UnableToAbort(f"message {message_id} is locked by the spooler")

    def check_finishable(self, message_id: str, owner: str) -> None:
        self.require_queued(message_id)
        if self.lock_owner != owner:
            raise NoSupport(f"only the spooler holding message {message_id}'s lock can finish it")
