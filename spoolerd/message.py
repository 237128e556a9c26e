"""The values that cross the store contract: folders, messages, recipients and their delivery state.

Plain frozen dataclasses: a store returns snapshots, never live objects, so a caller can hold one across
an ``await`` without seeing it change underneath. Times are POSIX seconds (float) from the store's clock.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .dsn_params import Notify, Ret, check_envid, check_orcpt
from .errors import InvalidArgument
from .message_class import validate_class
from .wiretext import first_control

__all__ = [
    "Access",
    "ContentLines",
    "Delivery",
    "Draft",
    "Folder",
    "FolderRole",
    "InboundMessage",
    "Message",
    "MessageFlag",
    "MessageSummary",
    "NewRecipient",
    "QueueEntry",
    "Recipient",
    "RecipientKind",
    "RecipientState",
    "RecipientUpdate",
    "StateChange",
    "SubmitFlag",
    "address_type_of",
    "check_class",
    "check_time",
    "check_wire_text",
    "flag_names",
    "validate_draft",
    "validate_inbound",
    "validate_state_change",
]


class FolderRole(enum.StrEnum):
    ROOT = "root"
    INBOX = "inbox"
    OUTBOX = "outbox"
    SENT = "sent"
    DRAFTS = "drafts"
    DELETED = "deleted"


class MessageFlag(enum.IntFlag):
    """PR_MESSAGE_FLAGS bits that spoolerd keeps (the values are MAPI's)."""

    NONE = 0
    READ = 0x0001
    UNSENT = 0x0008
    RESEND = 0x0080
    SUBMIT = 0x0004
    FROMME = 0x0020


class ContentLines(enum.IntFlag):
    """What a store found of a message's lines when it wrote its content (``spoolerd.lines.lines_of``),
    so that a delivery need not scan the message for them again: for 1 MB messages those scans were 44%
    of the daemon's CPU. NONE: nothing known (a store that does not record them, or content it wrote
    before it did); a transport then looks for itself."""

    NONE = 0
    CRLF = 0x1  # every line ends in CRLF, the last one too
    SHORT = 0x2  # no line is longer than 998 octets
    NO_DOT = 0x4  # no line begins with "." (SMTP's DATA needs no dot-stuffing)


def flag_names(flags: MessageFlag) -> list[str]:
    """The bits set, by name in lower case (``["read", "fromme"]``): what the control socket shows."""
    return [flag.name.lower() for flag in MessageFlag if flag.name and flag in flags]


class SubmitFlag(enum.IntFlag):
    """PR_SUBMIT_FLAGS bits (the values are MAPI's)."""

    NONE = 0
    LOCKED = 0x0001
    PREPROCESS = 0x0002


class Access(enum.StrEnum):
    """How ``open`` is asked to open a message (OpenEntry's access flags)."""

    READ = "read"
    MODIFY = "modify"
    BEST = "best"


class RecipientKind(enum.StrEnum):
    TO = "to"
    CC = "cc"
    BCC = "bcc"


class RecipientState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (RecipientState.DELIVERED, RecipientState.FAILED)


def address_type_of(address: str) -> str:
    """The address type a bare address implies: ``SMTP`` for ``user@domain``, else empty."""
    local, at, domain = address.rpartition("@")
    return "SMTP" if at and local and domain else ""


@dataclass(frozen=True, slots=True)
class Folder:
    id: str
    name: str
    role: FolderRole | None = None
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class NewRecipient:
    """A recipient as a client adds it; delivery state starts out pending."""

    address: str
    display_name: str = ""
    kind: RecipientKind = RecipientKind.TO
    address_type: str | None = None  # None: derived from the address
    notify: Notify | None = None  # RFC 3461 NOTIFY; None: not given (the message's defaults)
    orcpt: str | None = None  # RFC 3461 ORCPT, "addr-type;address"

    @property
    def resolved_type(self) -> str:
        return self.address_type if self.address_type is not None else address_type_of(self.address)


@dataclass(frozen=True, slots=True)
class Recipient:
    index: int  # stable within its message: how outcomes name the recipient
    address: str
    display_name: str
    address_type: str
    kind: RecipientKind
    responsibility: bool = False
    state: RecipientState = RecipientState.PENDING
    attempts: int = 0
    next_attempt: float | None = None
    last_code: int | None = None
    last_status: str | None = None  # enhanced status code, e.g. "5.1.1"
    last_text: str | None = None
    transport: str | None = None
    notify: Notify | None = None  # RFC 3461 NOTIFY; None: not given (the message's defaults)
    orcpt: str | None = None  # RFC 3461 ORCPT, "addr-type;address"


@dataclass(frozen=True, slots=True)
class RecipientUpdate:
    """The outcome of one delivery attempt for one recipient, as the spooler records it."""

    index: int
    state: RecipientState
    transport: str | None = None
    code: int | None = None
    status: str | None = None
    text: str | None = None
    next_attempt: float | None = None


@dataclass(frozen=True, slots=True)
class Draft:
    """What a client writes into a message: its properties, recipients and RFC 5322 content."""

    content: bytes
    recipients: Sequence[NewRecipient] = ()
    message_class: str = "IPM.Note"
    flags: MessageFlag = MessageFlag.UNSENT
    priority: int = 0  # -1 non-urgent, 0 normal, 1 urgent (PR_PRIORITY)
    sender: str = ""  # envelope sender (reverse-path); "" is the null sender
    subject: str = ""
    sentmail_folder: str | None = None  # PR_SENTMAIL_ENTRYID
    delete_after_submit: bool = False
    not_before: float | None = None  # PR_DEFERRED_SEND_TIME
    ndr_requested: bool = True
    dr_requested: bool = False
    dsn_ret: Ret | None = None  # RFC 3461 RET; None: not given
    dsn_envid: str | None = None  # RFC 3461 ENVID, decoded


@dataclass(frozen=True, slots=True)
class Message:
    """A snapshot of one message. ``writable`` says whether the open granted write access."""

    id: str
    folder_id: str
    message_class: str
    flags: MessageFlag
    submit_flags: SubmitFlag
    priority: int
    sender: str
    subject: str
    size: int
    content: bytes
    recipients: tuple[Recipient, ...]
    created_at: float
    client_submit_time: float | None
    not_before: float | None
    next_attempt: float | None
    sentmail_folder: str | None
    delete_after_submit: bool
    ndr_requested: bool
    dr_requested: bool
    lock_owner: str | None
    lock_expiry: float | None
    writable: bool = False
    delay_reported: bool = False  # a delay warning went to the sender for this submission
    held: bool = False  # queued, but kept from sending until released
    dsn_ret: Ret | None = None  # RFC 3461 RET; None: not given
    dsn_envid: str | None = None  # RFC 3461 ENVID, decoded
    lines: ContentLines = ContentLines.NONE  # what the store knows of the content's lines

    @property
    def queued(self) -> bool:
        return MessageFlag.SUBMIT in self.flags


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """One row of a folder's contents table (no content, no recipients)."""

    id: str
    folder_id: str
    message_class: str
    flags: MessageFlag
    sender: str
    subject: str
    size: int
    time: float  # submit time if submitted, else creation/receipt time


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One row of the outgoing queue table (GetOutgoingQueue's columns that matter here)."""

    id: str
    client_submit_time: float
    due_at: float  # not before this time: max(not_before, next_attempt)
    flags: MessageFlag
    submit_flags: SubmitFlag
    priority: int
    sender: str
    subject: str
    size: int
    lock_owner: str | None
    lock_expiry: float | None
    not_before: float | None = None  # the deferred send time, if any
    held: bool = False  # kept from sending until released


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message a transport downloaded, to be delivered into a receive folder."""

    content: bytes
    message_class: str = ""  # empty: IPM.Note
    sender: str = ""
    subject: str = ""
    flags: MessageFlag = MessageFlag.NONE
    received_at: float | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where ``deliver`` put an inbound message."""

    message_id: str
    folder_id: str
    message_class: str
    flags: MessageFlag = field(default=MessageFlag.NONE)


def check_wire_text(what: str, value: str, *, allow_empty: bool = True) -> str:
    """Refuse CR, LF and other control characters in a value that may reach an SMTP/IMAP wire."""
    if not value and not allow_empty:
        raise InvalidArgument(f"{what} is empty")
    bad = first_control(value)
    if bad is not None:
        raise InvalidArgument(f"{what} {value!r} contains the control character {bad!r}")
    return value


def check_time(what: str, value: float | None) -> None:
    """Refuse NaN and infinities where a time or a duration is expected (None is allowed)."""
    if value is not None and not math.isfinite(value):
        raise InvalidArgument(f"{what} must be a finite number, not {value!r}")


def _check_line(what: str, value: str) -> None:
    if any(ch in value for ch in "\r\n\0"):
        raise InvalidArgument(f"{what} {value!r} contains CR, LF or NUL")


def check_class(message_class: str) -> None:
    """``validate_class`` with the store's error: ``InvalidArgument``."""
    try:
        validate_class(message_class)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc


def _check_common(content: object, message_class: str, sender: str, subject: str) -> None:
    if not isinstance(content, bytes | bytearray | memoryview):
        raise InvalidArgument("message content must be bytes (RFC 5322)")
    check_class(message_class)
    check_wire_text("sender", sender)
    _check_line("subject", subject)


def validate_draft(draft: Draft) -> None:
    """The checks every store makes before accepting a draft."""
    _check_common(draft.content, draft.message_class, draft.sender, draft.subject)
    check_time("not_before", draft.not_before)
    if draft.priority not in (-1, 0, 1):
        raise InvalidArgument(f"priority must be -1, 0 or 1, not {draft.priority!r}")
    if draft.dsn_ret is not None and not isinstance(draft.dsn_ret, Ret):
        raise InvalidArgument(f"dsn_ret must be full or hdrs, not {draft.dsn_ret!r}")
    if draft.dsn_envid is not None:
        check_envid(draft.dsn_envid)
    for rcpt in draft.recipients:
        check_wire_text("recipient address", rcpt.address, allow_empty=False)
        check_wire_text("recipient display name", rcpt.display_name)
        check_wire_text("recipient address type", rcpt.resolved_type)
        if not isinstance(rcpt.kind, RecipientKind):
            raise InvalidArgument(f"recipient kind must be to, cc or bcc, not {rcpt.kind!r}")
        if rcpt.notify is not None and not isinstance(rcpt.notify, Notify):
            raise InvalidArgument(f"recipient notify must be a Notify, not {rcpt.notify!r}")
        if rcpt.orcpt is not None:
            check_orcpt(rcpt.orcpt)


def validate_inbound(message: InboundMessage) -> None:
    """The checks every store makes before accepting an inbound message."""
    _check_common(message.content, message.message_class, message.sender, message.subject)
    check_time("received_at", message.received_at)


@dataclass(frozen=True, slots=True)
class StateChange:
    """A transport's memory kept in a store (e.g. an IMAP account's UIDVALIDITY and the UIDs it took):
    keys set to bytes, or to None to forget them. Given to ``deliver``, it commits with the message."""

    transport: str
    changes: Mapping[str, bytes | None]


def validate_state_change(change: StateChange) -> None:
    check_wire_text("transport", change.transport, allow_empty=False)
    for key, value in change.changes.items():
        check_wire_text("transport state key", key, allow_empty=False)
        if value is not None and not isinstance(value, bytes):
            raise InvalidArgument(f"transport state {key!r} must be bytes or None")
