"""What a delivery event says and how it is signed: sans-io, no store, no socket, no clock of its own.

One event per recipient outcome recorded by an attempt (``delivered``, ``deferred``, ``bounced``,
``expired``: the mail log's ``status=``, ``maillog.status_of``) and per recipient a delay warning names
(``delayed``). Its JSON body is made once, when the outcome is recorded, and kept in the store's outbox
(spoolerd/outbox.py) for every webhook that wants that kind; a retry sends the same bytes. The headers are
made at each POST: ``X-Spoolerd-Timestamp`` (Unix seconds) and ``X-Spoolerd-Signature: sha256=`` the hex
HMAC-SHA256, keyed with the webhook's secret, of the timestamp, a ``.``, and the body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from .. import maillog
from ..dsn import RecipientStatus
from ..envelope import header_message_id
from ..message import Message, Recipient, RecipientUpdate
from ..outbox import OutboxEvent
from .settings import EventKind

__all__ = [
    "SIGNATURE",
    "TIMESTAMP",
    "DeliveryEvent",
    "WebhookEvents",
    "delay_events",
    "outcome_events",
    "signature",
    "signed_headers",
]

TIMESTAMP = "X-Spoolerd-Timestamp"
SIGNATURE = "X-Spoolerd-Signature"

_KIND = {
    maillog.Status.SENT: EventKind.DELIVERED,
    maillog.Status.DEFERRED: EventKind.DEFERRED,
    maillog.Status.BOUNCED: EventKind.BOUNCED,
    maillog.Status.EXPIRED: EventKind.EXPIRED,
}

NewId = Callable[[], str]


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    """One event, as its JSON body has it (README: Webhooks)."""

    id: str  # unique: a receiver that gets an event twice (at least once) knows it by this
    event: EventKind
    time: float  # Unix seconds when the outcome was recorded
    store: str
    queue_id: str
    message_id: str  # the Message-ID header field ("" if there is none)
    sender: str
    recipient: str
    transport: str | None
    dsn: str | None  # enhanced status code, e.g. "5.1.1"
    code: int | None  # the SMTP reply code, when a server answered
    reply: str  # the server's words, or why the spooler gave up
    attempt: int  # attempts of this recipient so far (this one included)
    next_attempt: float | None  # deferred: when it is tried again

    def payload(self) -> bytes:
        body = {
            "id": self.id,
            "event": self.event.value,
            "time": self.time,
            "store": self.store,
            "queue_id": self.queue_id,
            "message_id": self.message_id,
            "sender": self.sender,
            "recipient": self.recipient,
            "transport": self.transport,
            "dsn": self.dsn,
            "code": self.code,
            "reply": self.reply,
            "attempt": self.attempt,
            "next_attempt": self.next_attempt,
        }
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _event(
    kind: EventKind,
    store: str,
    message: Message,
    recipient: str,
    r: Recipient | None,
    *,
    now: float,
    new_id: NewId,
) -> DeliveryEvent:
    """An event about ``recipient`` (``r``: as it was before this attempt), to be given its outcome."""
    return DeliveryEvent(
        id=new_id(),
        event=kind,
        time=now,
        store=store,
        queue_id=message.id,
        message_id=header_message_id(message.content),
        sender=message.sender,
        recipient=recipient,
        transport=r.transport if r else None,
        dsn=None,
        code=None,
        reply="",
        attempt=r.attempts + 1 if r else 1,
        next_attempt=r.next_attempt if r else None,
    )


def outcome_events(
    store: str,
    message: Message,
    recipients: Iterable[Recipient],
    updates: Sequence[RecipientUpdate],
    *,
    now: float,
    new_id: NewId = _new_id,
) -> list[DeliveryEvent]:
    """An event for each recorded outcome (``updates``) of ``recipients`` (as they were before it)."""
    by_index = {r.index: r for r in recipients}
    events = []
    for u in updates:
        r = by_index[u.index]
        if r.state.final:
            continue  # the store keeps a final outcome: nothing new happened to this recipient
        kind = _KIND[maillog.status_of(u.state, u.status)]
        event = _event(kind, store, message, r.address, r, now=now, new_id=new_id)
        events.append(
            replace(
                event,
                transport=u.transport or r.transport,
                dsn=u.status,
                code=u.code,
                reply=u.text or "",
                next_attempt=u.next_attempt,
            )
        )
    return events


def delay_events(
    store: str,
    message: Message,
    statuses: Sequence[RecipientStatus],
    *,
    now: float,
    new_id: NewId = _new_id,
) -> list[DeliveryEvent]:
    """An event for each recipient a delay warning names (the sender was told it still waits)."""
    recipients = {r.address: r for r in message.recipients}
    return [
        replace(
            _event(
                EventKind.DELAYED,
                store,
                message,
                s.address,
                recipients.get(s.address),
                now=now,
                new_id=new_id,
            ),
            dsn=s.status,
            code=s.code,
            reply=s.diagnostic,
        )
        for s in statuses
    ]


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=`` and the hex HMAC-SHA256 of ``timestamp + "." + body`` keyed with ``secret``."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signed_headers(secret: bytes, body: bytes, now: float) -> list[tuple[str, str]]:
    timestamp = str(int(now))
    return [(TIMESTAMP, timestamp), (SIGNATURE, signature(secret, timestamp, body))]


class WebhookEvents:
    """What the delivery stages write for the configured webhooks: each event, for each webhook that
    wants its kind; and whom to tell once it is written (the senders, which sleep until then)."""

    def __init__(self, kinds: Mapping[str, Iterable[EventKind]], new_id: NewId = _new_id) -> None:
        self.kinds = {name: frozenset(k) for name, k in kinds.items()}
        self.new_id = new_id
        self.on_written: list[Callable[[str], None]] = []  # called with the store's name

    def outbox(self, events: Sequence[DeliveryEvent]) -> list[OutboxEvent]:
        return [
            OutboxEvent(name, e.queue_id, payload)
            for e in events
            for payload in (e.payload(),)
            for name, kinds in self.kinds.items()
            if e.event in kinds
        ]

    def for_outcomes(
        self,
        store: str,
        message: Message,
        recipients: Iterable[Recipient],
        updates: Sequence[RecipientUpdate],
        *,
        now: float,
    ) -> list[OutboxEvent]:
        return self.outbox(outcome_events(store, message, recipients, updates, now=now, new_id=self.new_id))

    def for_delay(
        self, store: str, message: Message, statuses: Sequence[RecipientStatus], *, now: float
    ) -> list[OutboxEvent]:
        return self.outbox(delay_events(store, message, statuses, now=now, new_id=self.new_id))

    def written(self, store: str, events: Sequence[OutboxEvent]) -> None:
        """Events committed in ``store``: wake its senders."""
        if events:
            for wake in self.on_written:
                wake(store)
