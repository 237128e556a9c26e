"""Putting a message on the outgoing queue: the rule of ``submit`` and ``submit_new``, once, as values.

``QueueRequest.checked`` checks the caller's arguments before any transaction. Inside it, ``plan`` turns
what the message is now (its class, flags and deferred send time) into what its row holds once queued:
SUBMIT + UNSENT, the outbound class, the client submit time, when it is due, the preprocess flag,
optionally a lease, and the per-submission marks cleared. Every recipient without a final outcome is
pending again with responsibility FALSE; one with a final outcome keeps it (never sent twice) unless
the message asks to be sent again (MSGFLAG_RESEND: ``Queued.resend``). A dialect only writes the values:
``submit`` updates the message and resets its recipients; ``submit_new`` inserts the message already
queued, its recipients being new (pending) anyway, so the same rule costs it no extra statement.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from spoolerd.errors import NoRecipients
from spoolerd.message import Draft, MessageFlag, SubmitFlag, check_time, check_wire_text, validate_draft
from spoolerd.message_class import outbound_class

from .rows import DRAFT_COLUMNS, DraftRow
from .rules import due

__all__ = ["NEW_QUEUED_COLUMNS", "PLAN_COLUMNS", "QUEUED_COLUMNS", "QueueRequest", "Queued"]


@dataclass(frozen=True, slots=True)
class Queued:
    """The columns of a queued message's row that queueing sets (QUEUED_COLUMNS, in order), and whether
    recipients with a final outcome are made pending again too."""

    message_class: str
    flags: int
    submit_flags: int
    client_submit_time: float
    next_attempt: None
    due_at: float
    queued: bool
    lock_owner: str | None
    lock_expiry: float | None
    delay_reported: bool
    held: bool
    resend: bool  # not a column: MSGFLAG_RESEND

    def values(self) -> tuple[Any, ...]:
        """In the order of QUEUED_COLUMNS."""
        return (
            self.message_class, self.flags, self.submit_flags, self.client_submit_time, self.next_attempt,
            self.due_at, self.queued, self.lock_owner, self.lock_expiry, self.delay_reported, self.held,
        )  # fmt: skip

    def new_values(self, draft: DraftRow) -> tuple[Any, ...]:
        """A new message's columns in the order of NEW_QUEUED_COLUMNS: the draft's, then these."""
        columns = dict(zip(DRAFT_COLUMNS, draft.values(), strict=True))
        return (*(columns[name] for name in _DRAFT_KEPT), *self.values())


QUEUED_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Queued) if f.name != "resend")
_DRAFT_KEPT = tuple(name for name in DRAFT_COLUMNS if name not in QUEUED_COLUMNS)  # class, flags: queueing's
NEW_QUEUED_COLUMNS: tuple[str, ...] = (*_DRAFT_KEPT, *QUEUED_COLUMNS)


@dataclass(frozen=True, slots=True)
class QueueRequest:
    """``submit``'s arguments, checked: when, whether preprocessors run, and the lease it starts with."""

    now: float
    preprocess: bool = False
    lock_owner: str | None = None
    lock_expiry: float | None = None

    @classmethod
    def checked_new(
        cls, draft: Draft, now: float, preprocess: bool, lock: tuple[str, float] | None
    ) -> QueueRequest:
        """``submit_new``'s arguments: a valid draft with recipients, and ``checked``'s."""
        validate_draft(draft)
        if not draft.recipients:
            raise NoRecipients("the message has no recipients")
        return cls.checked(now, preprocess, lock)

    @classmethod
    def checked(cls, now: float, preprocess: bool, lock: tuple[str, float] | None) -> QueueRequest:
        if lock is None:
            return cls(now, preprocess)
        owner, lease = lock
        check_wire_text("lock owner", owner, allow_empty=False)
        check_time("lease", lease)
        return cls(now, preprocess, owner, now + lease)

    def plan(self, message_class: str, flags: int, not_before: float | None) -> Queued:
        """The queued row of a message that now has this class, these flags and this deferred send time."""
        return Queued(
            message_class=outbound_class(message_class),
            flags=int(flags | MessageFlag.SUBMIT | MessageFlag.UNSENT),
            submit_flags=int(SubmitFlag.PREPROCESS if self.preprocess else SubmitFlag.NONE),
            client_submit_time=self.now,
            next_attempt=None,
            due_at=due(self.now, not_before),
            queued=True,
            lock_owner=self.lock_owner,
            lock_expiry=self.lock_expiry,
            delay_reported=False,
            held=False,
            resend=bool(flags & MessageFlag.RESEND),
        )

    def plan_row(self, row: Any) -> Queued:
        """``plan`` for a row read with PLAN_COLUMNS."""
        return self.plan(row["message_class"], row["flags"], row["not_before"])

    def plan_new(self, draft: DraftRow) -> Queued:
        return self.plan(draft.message_class, draft.flags, draft.not_before)


PLAN_COLUMNS = "message_class, flags, not_before"  # what a message's queued row is planned from
