"""What the control socket's commands answer and what ``subscribe`` streams, as typed records.

Each is a TypedDict: the JSON object on the wire, key for key (README and DESIGN §6 are the contract;
``spoolerctl --json`` prints them as they come). The spooler's own events are in spoolerd/events.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, NotRequired, TypedDict

from ..events import SpoolerEvent

__all__ = [
    "Aborted",
    "CommandResult",
    "ControlEvent",
    "DeferralRow",
    "Fetched",
    "FlushCounts",
    "FlushStarted",
    "FolderRow",
    "Held",
    "NewMailEvent",
    "OnlineState",
    "Overflow",
    "Pong",
    "PurgeResult",
    "QueueChangedEvent",
    "QueueRecipient",
    "QueueRow",
    "Reloaded",
    "Removed",
    "SpoolerRow",
    "StateFields",
    "StatusRow",
    "StoreRow",
    "SubmitResult",
    "Subscribed",
    "Unsubscribed",
]


class Pong(TypedDict):
    pong: bool
    version: str


class StateFields(TypedDict):
    """Every status row's state (spoolerd/resource_state.py)."""

    state: str  # online / offline / active / flushing / failing
    since: float | None  # when the state began (None: at the start)
    last_error: str | None  # the latest problem, kept once it is over
    failing_since: float | None


class SpoolerRow(StateFields):
    entry_id: str
    resource_type: Literal["spooler"]
    name: str
    status: list[str]
    methods: list[str]
    in_flight: int
    counters: dict[str, int]


class StoreRow(StateFields):
    entry_id: str
    resource_type: Literal["store"]
    name: str
    provider: str
    status: list[str]
    methods: list[str]
    coupled_transport: str | None  # the entry id of the transport a tightly coupled store hands to
    counters: dict[str, int | None]  # queued (None: unreadable), locked_here, locked_elsewhere
    holders: dict[str, int] | None  # leases by owner (a daemon's owner name): who sends what
    retention: dict[str, Any]


# a transport's row carries keys of its own (``Reporting``), a listener's its own shape
StatusRow = SpoolerRow | StoreRow | Mapping[str, Any]


class QueueRecipient(TypedDict):
    address: str
    state: str
    attempts: int
    last_code: int | None
    last_status: str | None
    last_text: str | None
    transport: str | None
    next_attempt: float | None
    waiting: dict[str, Any] | None  # a down destination, an offline transport or a rate's turn it waits for


class QueueRow(TypedDict):
    id: str
    store: str
    age: float
    size: int
    sender: str
    subject: NotRequired[str]  # for an administrator: mailq shows envelopes, not what mail says
    due_at: float | None
    locked: bool
    locked_by: str | None  # a daemon's owner name
    locked_here: bool
    held: bool
    priority: int  # PR_PRIORITY: -1 non-urgent, 0 normal, 1 urgent
    recipients: list[QueueRecipient] | None  # None: being delivered right now, or just finished


class SubmitResult(TypedDict):
    id: str
    store: str
    queued: bool
    recipients: int


class DeferralRow(TypedDict):
    """A recipient a flush left waiting, and why."""

    id: str
    store: str
    recipient: str
    code: int | None
    status: str | None
    reason: str


class FlushCounts(TypedDict):
    sent: int
    deferred: int
    failed: int
    received: int
    deferrals: NotRequired[list[DeferralRow]]  # an upload flush: why each still waits


class FlushStarted(TypedDict):
    started: bool  # ``wait = false``: answered at once, flushing in the background


class Aborted(TypedDict):
    id: str
    aborted: bool


class Held(TypedDict):
    id: str
    held: bool


class Reloaded(TypedDict):
    reloaded: bool
    applied: list[str]
    restart_needed: list[str]
    not_applied: list[str]  # tried and failed: a listener that cannot bind


class OnlineState(TypedDict):
    transport: str
    online: bool


# "class" is a keyword: these two are spelled the functional way
FolderRow = TypedDict(
    "FolderRow",
    {"id": str, "class": str, "flags": int, "sender": str, "subject": str, "size": int, "time": float},
)
Fetched = TypedDict(
    "Fetched",
    {
        "id": str,
        "class": str,
        "flags": list[str],
        "priority": int,
        "not_before": float | None,
        "ndr_requested": bool,
        "dr_requested": bool,
        "content": str,  # base64
    },
)


class Removed(TypedDict):
    id: str
    store: str
    removed: bool


class PurgeResult(TypedDict):
    store: str
    folder: str
    purged: int


class Unsubscribed(TypedDict):
    subscribed: bool  # the stream ended


CommandResult = Mapping[str, object] | Sequence[Mapping[str, object]]


# ---------------------------------------------------------------------- subscribe's events


class Subscribed(TypedDict):
    type: Literal["subscribed"]
    stores: list[str]


class QueueChangedEvent(TypedDict):
    type: Literal["queue_changed"]
    store: str
    reason: str
    id: str | None


NewMailEvent = TypedDict(
    "NewMailEvent",
    {"type": Literal["new_mail"], "store": str, "id": str, "folder": str, "class": str, "flags": list[str]},
)


class Overflow(TypedDict):
    type: Literal["overflow"]
    message: str


ControlEvent = SpoolerEvent | Subscribed | QueueChangedEvent | NewMailEvent | Overflow
