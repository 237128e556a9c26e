"""The store tables' rows as values, for both dialects: the columns to select and what they map to.

A row is read by column name (``sqlite3.Row``, ``asyncpg.Record``), so a mapping never counts positions
and a select list may change its order without a reader noticing. The rows read for every delivery
(``QUEUE_COLUMNS``, ``MESSAGE_COLUMNS``, ``RECIPIENT_COLUMNS``) go by name through the position the
name has in its select list (``_positions``): ``sqlite3.Row`` finds a name by comparing it with each
column name in turn, which cost more than the rest of reading such a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from spoolerd.dsn_params import Notify, Ret
from spoolerd.lines import lines_of
from spoolerd.message import (
    ContentLines,
    Delivery,
    Draft,
    Folder,
    FolderRole,
    InboundMessage,
    Message,
    MessageFlag,
    MessageSummary,
    NewRecipient,
    QueueEntry,
    Recipient,
    RecipientKind,
    RecipientState,
    StateChange,
    validate_inbound,
    validate_state_change,
)
from spoolerd.message_class import inbound_class

from .rules import Lease

__all__ = [
    "ARRIVAL_COLUMNS",
    "DRAFT_COLUMNS",
    "FOLDER_COLUMNS",
    "LOADED_COLUMNS",
    "MESSAGE_COLUMNS",
    "NEW_RECIPIENT_COLUMNS",
    "QUEUE_COLUMNS",
    "RECIPIENT_COLUMNS",
    "SUMMARY_COLUMNS",
    "Arrival",
    "DraftRow",
    "Row",
    "folder_from_row",
    "message_from_row",
    "new_recipient_values",
    "queue_entry_from_row",
    "recipient_from_row",
    "summary_from_row",
]

Row = Any  # a sqlite3.Row or an asyncpg.Record: row["column"]

FOLDER_COLUMNS = "id, name, role, parent_id"
MESSAGE_COLUMNS = (  # of ``messages m``, followed by the content ``c.data`` where a message is loaded
    "m.id, m.folder_id, m.message_class, m.flags, m.submit_flags, m.priority, m.sender, m.subject, m.size,"
    " m.created_at, m.client_submit_time, m.not_before, m.next_attempt, m.sentmail_folder,"
    " m.delete_after_submit, m.ndr_requested, m.dr_requested, m.lock_owner, m.lock_expiry, m.queued,"
    " m.delay_reported, m.held, m.dsn_ret, m.dsn_envid"
)
RECIPIENT_COLUMNS = (
    "idx, address, display_name, address_type, kind, responsibility, state, attempts, next_attempt,"
    " last_code, last_status, last_text, transport, notify, orcpt"
)
# what a new recipient's row is written with (the rest has its defaults: pending, never tried)
NEW_RECIPIENT_COLUMNS = (
    "message_id",
    "idx",
    "address",
    "display_name",
    "address_type",
    "kind",
    "notify",
    "orcpt",
)
QUEUE_COLUMNS = (
    "id, client_submit_time, due_at, flags, submit_flags, priority, sender, subject, size, lock_owner,"
    " lock_expiry, not_before, held"
)
LOADED_COLUMNS = f"{MESSAGE_COLUMNS}, m.lines, c.data"  # a message as ``message_from_row`` reads it
SUMMARY_COLUMNS = (
    "id, folder_id, message_class, flags, sender, subject, size,"
    " COALESCE(client_submit_time, created_at) AS listed_at"
)


def _positions(columns: str) -> dict[str, int]:
    """Each column's position in a select list of plain columns (``m.flags`` is ``flags``)."""
    names = [part.strip().rpartition(".")[2] for part in columns.split(",")]
    assert all(name.isidentifier() for name in names) and len(set(names)) == len(names), columns
    return {name: i for i, name in enumerate(names)}


_QUEUE = _positions(QUEUE_COLUMNS)
_MESSAGE = _positions(LOADED_COLUMNS)
_RECIPIENT = _positions(RECIPIENT_COLUMNS)


def folder_from_row(row: Row) -> Folder:
    """A row selected with FOLDER_COLUMNS."""
    role, parent = row["role"], row["parent_id"]
    return Folder(
        id=str(row["id"]),
        name=row["name"],
        role=FolderRole(role) if role else None,
        parent_id=None if parent is None else str(parent),
    )


def recipient_from_row(row: Row) -> Recipient:
    """A row selected with RECIPIENT_COLUMNS."""
    c = _RECIPIENT
    return Recipient(
        index=row[c["idx"]],
        address=row[c["address"]],
        display_name=row[c["display_name"]],
        address_type=row[c["address_type"]],
        kind=RecipientKind(row[c["kind"]]),
        responsibility=bool(row[c["responsibility"]]),
        state=RecipientState(row[c["state"]]),
        attempts=row[c["attempts"]],
        next_attempt=row[c["next_attempt"]],
        last_code=row[c["last_code"]],
        last_status=row[c["last_status"]],
        last_text=row[c["last_text"]],
        transport=row[c["transport"]],
        notify=None if row[c["notify"]] is None else Notify(row[c["notify"]]),
        orcpt=row[c["orcpt"]],
    )


def new_recipient_values(mid: int, recipients: Sequence[NewRecipient]) -> list[tuple[Any, ...]]:
    """New recipients' rows, in the order of NEW_RECIPIENT_COLUMNS (their index is their position)."""
    return [
        (
            mid,
            i,
            r.address,
            r.display_name,
            r.resolved_type,
            RecipientKind(r.kind).value,
            None if r.notify is None else int(r.notify),
            r.orcpt,
        )
        for i, r in enumerate(recipients)
    ]


def message_from_row(row: Row, recipients: tuple[Recipient, ...], now: float) -> Message:
    """A row selected with LOADED_COLUMNS (MESSAGE_COLUMNS, ``m.lines``, ``c.data``), and its recipients."""
    c = _MESSAGE
    lease = Lease.of(row[c["lock_owner"]], row[c["lock_expiry"]], now)
    sentmail = row[c["sentmail_folder"]]
    return Message(
        id=str(row[c["id"]]),
        folder_id=str(row[c["folder_id"]]),
        message_class=row[c["message_class"]],
        flags=MessageFlag(row[c["flags"]]),
        submit_flags=lease.submit_flags(row[c["submit_flags"]]),
        priority=row[c["priority"]],
        sender=row[c["sender"]],
        subject=row[c["subject"]],
        size=row[c["size"]],
        content=bytes(row[c["data"]]),
        lines=ContentLines(row[c["lines"]]),
        recipients=recipients,
        created_at=row[c["created_at"]],
        client_submit_time=row[c["client_submit_time"]],
        not_before=row[c["not_before"]],
        next_attempt=row[c["next_attempt"]],
        sentmail_folder=None if sentmail is None else str(sentmail),
        delete_after_submit=bool(row[c["delete_after_submit"]]),
        ndr_requested=bool(row[c["ndr_requested"]]),
        dr_requested=bool(row[c["dr_requested"]]),
        lock_owner=lease.owner,
        lock_expiry=lease.expiry,
        delay_reported=bool(row[c["delay_reported"]]),
        held=bool(row[c["held"]]),
        dsn_ret=None if row[c["dsn_ret"]] is None else Ret(row[c["dsn_ret"]]),
        dsn_envid=row[c["dsn_envid"]],
    )


def queue_entry_from_row(row: Row, now: float) -> QueueEntry:
    """A row selected with QUEUE_COLUMNS."""
    c = _QUEUE
    lease = Lease.of(row[c["lock_owner"]], row[c["lock_expiry"]], now)
    return QueueEntry(
        id=str(row[c["id"]]),
        client_submit_time=row[c["client_submit_time"]],
        due_at=row[c["due_at"]],
        flags=MessageFlag(row[c["flags"]]),
        submit_flags=lease.submit_flags(row[c["submit_flags"]]),
        priority=row[c["priority"]],
        sender=row[c["sender"]],
        subject=row[c["subject"]],
        size=row[c["size"]],
        lock_owner=lease.owner,
        lock_expiry=lease.expiry,
        not_before=row[c["not_before"]],
        held=bool(row[c["held"]]),
    )


def summary_from_row(row: Row) -> MessageSummary:
    """A row selected with SUMMARY_COLUMNS."""
    return MessageSummary(
        id=str(row["id"]),
        folder_id=str(row["folder_id"]),
        message_class=row["message_class"],
        flags=MessageFlag(row["flags"]),
        sender=row["sender"],
        subject=row["subject"],
        size=row["size"],
        time=row["listed_at"],
    )


@dataclass(frozen=True, slots=True)
class DraftRow:
    """The columns of ``messages`` a draft sets (``create_message``, ``save``, ``submit_new``)."""

    message_class: str
    flags: int
    priority: int
    sender: str
    subject: str
    size: int
    lines: int  # what ``lines_of`` finds of the content (``Message.lines``)
    not_before: float | None
    sentmail_folder: int | None
    delete_after_submit: bool
    ndr_requested: bool
    dr_requested: bool
    dsn_ret: str | None
    dsn_envid: str | None

    @classmethod
    def of(cls, draft: Draft, sentmail_folder: int | None) -> DraftRow:
        """``sentmail_folder``: the id of the draft's sent-mail folder, which the caller looked up."""
        return cls(
            message_class=draft.message_class,
            flags=int(draft.flags & ~MessageFlag.SUBMIT),  # only submit sets SUBMIT
            priority=draft.priority,
            sender=draft.sender,
            subject=draft.subject,
            size=len(draft.content),
            lines=int(lines_of(draft.content)),
            not_before=draft.not_before,
            sentmail_folder=sentmail_folder,
            delete_after_submit=bool(draft.delete_after_submit),
            ndr_requested=bool(draft.ndr_requested),
            dr_requested=bool(draft.dr_requested),
            dsn_ret=None if draft.dsn_ret is None else Ret(draft.dsn_ret).value,
            dsn_envid=draft.dsn_envid,
        )

    def values(self) -> tuple[Any, ...]:
        """In the order of DRAFT_COLUMNS."""
        return (
            self.message_class, self.flags, self.priority, self.sender, self.subject, self.size,
            self.lines, self.not_before, self.sentmail_folder, self.delete_after_submit, self.ndr_requested,
            self.dr_requested, self.dsn_ret, self.dsn_envid,
        )  # fmt: skip


DRAFT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(DraftRow))


@dataclass(frozen=True, slots=True)
class Arrival:
    """An inbound message as ``deliver`` files it, checked: its row's columns, its content, and the
    downloading transport's memory of it (written in the same transaction)."""

    message_class: str
    flags: int
    sender: str
    subject: str
    size: int
    lines: int  # what ``lines_of`` finds of the content (``Message.lines``)
    created_at: float  # when it was received
    filed_at: float
    content: bytes
    state: StateChange | None

    @classmethod
    def checked(cls, message: InboundMessage, state: StateChange | None, now: float) -> Arrival:
        validate_inbound(message)
        if state is not None:
            validate_state_change(state)
        content = bytes(message.content)
        return cls(
            message_class=inbound_class(message.message_class),
            flags=int(message.flags),
            sender=message.sender,
            subject=message.subject,
            size=len(content),
            lines=int(lines_of(content)),
            created_at=message.received_at if message.received_at is not None else now,
            filed_at=now,
            content=content,
            state=state,
        )

    def values(self) -> tuple[Any, ...]:
        """In the order of ARRIVAL_COLUMNS."""
        return (
            self.message_class, self.flags, self.sender, self.subject, self.size, self.lines,
            self.created_at, self.filed_at,
        )  # fmt: skip

    def delivery(self, message_id: int, folder_id: str) -> Delivery:
        return Delivery(str(message_id), folder_id, self.message_class, MessageFlag(self.flags))


ARRIVAL_COLUMNS = ("message_class", "flags", "sender", "subject", "size", "lines", "created_at", "filed_at")
