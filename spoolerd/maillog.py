"""The mail log: one line for each thing that happens to mail, Postfix's ``status=`` lines as the model.

Each kind of line has one function here, so its keys are stated once: they are the stable keys of the
JSON format (``[log] format = "json"``). The console format shows the same lines as Postfix writes them
(``console_text``, used by ``logsetup``)::

    Q1: to=<a@example.net>, transport=relay, relay=mx.example.net:25, delay=1.20, dsn=2.0.0,
        status=sent (250 2.0.0 Ok)

A line is written once what it reports is durable (an outcome after it is recorded, an accepted message
after it is committed). Lines carry no secret: no credential is ever passed to them, and the SMTP AUTH
exchange is never logged. Transports may import this module (it needs only the contracts).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

import structlog

from .envelope import header_message_id
from .message import Message, Recipient, RecipientState, RecipientUpdate
from .said import SAID
from .transport import Tried
from .wiretext import printable

__all__ = [
    "ACCEPTED",
    "DELIVERY",
    "DOWNLOADED",
    "LOGIN_REFUSED",
    "MESSAGE_ID_ADDED",
    "RATE_CHANGED",
    "RELAY_DOWN",
    "RELAY_UP",
    "REPORT_FILED",
    "TLS_FAILED",
    "Status",
    "accepted",
    "console_text",
    "debugging",
    "delivery",
    "direct_writer",
    "downloaded",
    "message_id_added",
    "observe",
    "outcomes",
    "problem",
    "rate_changed",
    "relay_down",
    "relay_up",
    "reply_text",
    "report_filed",
    "status_of",
]

log = structlog.get_logger("spoolerd.mail")

Observer = Callable[[str, Mapping[str, Any]], None]
_observers: list[Observer] = []


def observe(observer: Observer) -> Callable[[], None]:
    """Have ``observer(event, keys)`` called for every mail line from now on, whatever the log level
    (the metrics count them); returns the function that stops it. The lines of every daemon in the
    process reach it: one daemon per process, as ``spoolerd run`` has."""
    _observers.append(observer)
    return lambda: _observers.remove(observer)


# writes a line itself and says True, or says False and leaves it to structlog (``logsetup.MailLines``)
DirectWriter = Callable[[int, str, Mapping[str, Any]], bool]
_direct: list[DirectWriter] = []  # none, or the one ``direct_writer`` set


def direct_writer(writer: DirectWriter | None) -> None:
    """Have ``writer`` offered every mail line first (None: structlog writes them all)."""
    _direct[:] = [] if writer is None else [writer]


def _write(level: int, event: str, **keys: Any) -> None:
    if not (_direct and _direct[0](level, event, keys)):
        log.log(level, event, **keys)
    for observer in _observers:
        observer(event, keys)


DELIVERY = "delivery"
ACCEPTED = "accepted"
REPORT_FILED = "report filed"
MESSAGE_ID_ADDED = "message-id added"
DOWNLOADED = "downloaded"
RELAY_DOWN = "relay down"
LOGIN_REFUSED = "relay login refused"
TLS_FAILED = "relay TLS failed"
RELAY_UP = "relay up"
RATE_CHANGED = "rate changed"


class Status(enum.StrEnum):
    """Postfix's ``status=`` words for what became of one recipient in one attempt."""

    SENT = "sent"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    EXPIRED = "expired"  # failed because it was queued too long (4.4.7)


def status_of(state: RecipientState, dsn: str | None) -> Status:
    if state is RecipientState.DELIVERED:
        return Status.SENT
    if state is RecipientState.FAILED:
        return Status.EXPIRED if dsn == "4.4.7" else Status.BOUNCED
    return Status.DEFERRED


def reply_text(diagnostic: str, relay: str | None) -> str:
    """The peer's words: a diagnostic that begins by naming the relay (``host:port said: …``, as the
    SMTP transport writes them for the queue and the NDR) loses that part, which has its own key."""
    if relay:
        for prefix in (f"{relay}{SAID}", f"{relay}: "):
            if diagnostic.startswith(prefix):
                return diagnostic[len(prefix) :]
    return diagnostic


def delivery(
    *,
    queue_id: str,
    message_id: str,
    recipient: str,
    transport: str | None,
    relay: str | None,
    delay: float,
    dsn: str | None,
    status: Status,
    reply: str,
) -> None:
    _write(
        logging.INFO,
        DELIVERY,
        queue_id=queue_id,
        message_id=message_id,
        recipient=recipient,
        transport=transport,
        relay=relay,
        delay=round(delay, 3),
        dsn=dsn,
        status=status.value,
        reply=reply,
    )


def outcomes(
    message: Message,
    pending: Sequence[Recipient],
    results: Mapping[int, Tried],
    updates: Sequence[RecipientUpdate],
    delay: float,
) -> None:
    """One delivery line per recipient of one attempt, from what was recorded (``updates``; a recipient
    without one was not tried: deferred behind a dead destination or an offline transport); ``delay``:
    seconds since the message was submitted."""
    recorded = {u.index: u for u in updates}
    message_id = header_message_id(message.content)
    for r in pending:
        tried = results[r.index]
        outcome = tried.outcome
        update = recorded.get(r.index)
        if update is None:
            state, dsn, text = RecipientState.DEFERRED, outcome.status, outcome.diagnostic
        else:
            state, dsn, text = update.state, update.status, update.text or ""
        delivery(
            queue_id=message.id,
            message_id=message_id,
            recipient=r.address,
            transport=tried.transport,
            relay=outcome.relay,
            delay=delay,
            dsn=dsn,
            status=status_of(state, dsn),
            reply=reply_text(text, outcome.relay),
        )


def accepted(
    *, queue_id: str, store: str, content: bytes, sender: str, recipients: int, via: str, **origin: Any
) -> None:
    """A message committed to a store's outgoing queue; ``via`` says how it came in (``socket`` for the
    control socket's submit, ``sendmail`` for the sendmail command writing into the store itself,
    ``smtp`` for a listener, whose ``origin`` adds ``listener``, ``client``, ``tls`` and ``user``)."""
    _write(
        logging.INFO,
        ACCEPTED,
        queue_id=queue_id,
        store=store,
        message_id=header_message_id(content),
        sender=sender,
        size=len(content),
        nrcpt=recipients,
        via=via,
        **origin,
    )


def message_id_added(*, queue_id: str, message_id: str) -> None:
    """A preprocessor gave message ``queue_id`` the Message-ID it lacked (the ``headers`` one does, at
    its first attempt): the accepted line had none, and this is the id the mail goes out with, in
    Postfix's cleanup form (``Q1: message-id=<...>``)."""
    _write(logging.INFO, MESSAGE_ID_ADDED, queue_id=queue_id, message_id=message_id)


def report_filed(
    *, queue_id: str, kind: str, recipients: int, store: str, folder: str, report_id: str
) -> None:
    """A report about message ``queue_id`` (``ndr``, ``dr`` or ``delay``) filed in the sender's store."""
    _write(
        logging.INFO,
        REPORT_FILED,
        queue_id=queue_id,
        report=kind.lower(),
        nrcpt=recipients,
        store=store,
        folder=folder,
        report_id=report_id,
    )


def downloaded(
    *,
    transport: str,
    account: str,
    server: str,
    mailbox: str,
    first_uid: int,
    last_uid: int,
    count: int,
    store: str,
) -> None:
    """A batch of messages downloaded and committed into ``store`` (not yet acknowledged on the server)."""
    _write(
        logging.INFO,
        DOWNLOADED,
        transport=transport,
        account=account,
        server=server,
        mailbox=mailbox,
        uids=f"{first_uid}:{last_uid}" if first_uid != last_uid else str(first_uid),
        count=count,
        store=store,
    )


def problem(dsn: str | None) -> str:
    """Which kind of state change a failure with no usable reply is, by its enhanced status code:
    X.7.8 is refused credentials (RFC 4954), X.7.4/X.7.5 missing or failed TLS, anything else no answer."""
    detail = (dsn or "")[1:]
    if detail == ".7.8":
        return LOGIN_REFUSED
    if detail in (".7.4", ".7.5"):
        return TLS_FAILED
    return RELAY_DOWN


def relay_down(*, transport: str, relay: str, dsn: str | None, reason: str) -> None:
    """A destination stopped answering (or refused our login, or failed TLS): written once, when it
    changes, however many messages wait for it."""
    _write(logging.WARNING, problem(dsn), transport=transport, relay=relay, dsn=dsn, reason=reason)


def relay_up(*, transport: str, relay: str, down_for: float) -> None:
    _write(logging.WARNING, RELAY_UP, transport=transport, relay=relay, down_for=round(down_for, 3))


def rate_changed(*, transport: str, relay: str, rate: str, until: float | None) -> None:
    """A destination's rate was halved by a slow-down reply (``until``: when the halving ends), or is
    back to the configured one (``until`` None): once per change."""
    _write(logging.WARNING, RATE_CHANGED, transport=transport, relay=relay, rate=rate, until=until)


def debugging() -> bool:
    """Whether debug lines are shown: lets a hot path skip building them at all."""
    return bool(log.is_enabled_for(logging.DEBUG))


# ---------------------------------------------------------------------- console format


def _delay(seconds: float) -> str:
    return f"{seconds:.2f}" if seconds < 10 else f"{seconds:.1f}" if seconds < 100 else f"{seconds:.0f}"


def _delivery_text(e: Mapping[str, Any]) -> str:
    return (
        f"{e['queue_id']}: to=<{e['recipient']}>, transport={e['transport'] or 'none'}, "
        f"relay={e['relay'] or 'none'}, delay={_delay(e['delay'])}, dsn={e['dsn'] or 'none'}, "
        f"status={e['status']} ({e['reply']})"
    )


def _accepted_text(e: Mapping[str, Any]) -> str:
    return (
        f"{e['queue_id']}: message-id={e['message_id'] or 'none'}, from=<{e['sender']}>, "
        f"size={e['size']}, nrcpt={e['nrcpt']}, via={e['via']}, store={e['store']}"
        + "".join(f", {key}={e[key]}" for key in ("listener", "client", "tls", "user") if e.get(key))
    )


def _message_id_text(e: Mapping[str, Any]) -> str:
    return f"{e['queue_id']}: message-id={e['message_id']}"


def _report_text(e: Mapping[str, Any]) -> str:
    return (
        f"{e['queue_id']}: {e['report']} report filed for {e['nrcpt']} recipient(s) as "
        f"{e['report_id']} in store {e['store']} (folder {e['folder']})"
    )


def _downloaded_text(e: Mapping[str, Any]) -> str:
    return (
        f"{e['transport']}: downloaded {e['count']} message(s) from {e['account']} at {e['server']}, "
        f"mailbox {e['mailbox']}, UID {e['uids']}, into store {e['store']}"
    )


_CONSOLE: dict[str, Callable[[Mapping[str, Any]], str]] = {
    DELIVERY: _delivery_text,
    ACCEPTED: _accepted_text,
    REPORT_FILED: _report_text,
    MESSAGE_ID_ADDED: _message_id_text,
    DOWNLOADED: _downloaded_text,
}


def console_text(event_dict: MutableMapping[str, Any]) -> str | None:
    """The console form of a mail line (None: not one), on one printable line whatever a header or a
    peer's reply held; a delivery worker's ends in ``, worker=K`` (spoolerd/workers.py)."""
    render = _CONSOLE.get(event_dict.get("event", ""))
    if render is None:
        return None
    try:
        text = render(event_dict)
    except (KeyError, TypeError, ValueError):  # not one of ours after all: shown as it came
        return None
    worker = event_dict.get("worker")
    return printable(text if worker is None else f"{text}, worker={worker}")
