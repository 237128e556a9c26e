"""Filing the reports an attempt decided on (NDR, DR, delay warning) in the sender's store, once each.

A report goes through the store's receive folder for its class (``REPORT.IPM.Note.NDR``...). The store
remembers, in the same transaction, that it was filed (``REPORTS``), so an attempt that dies before it
finishes the message (or marks the delay warned) does not file it again when it is repeated; the memory
is dropped once the message is finished (or the warning marked).
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from .. import maillog
from ..dsn import ReportKind, build_report, report_class
from ..errors import StoreError
from ..message import InboundMessage, Message, NewRecipient, StateChange
from ..outbox import OutboxEvent, record_outcomes
from ..outgoing import outgoing_draft, submit_outgoing
from ..store import MessageStore
from .decide import Report, submitted_at
from .settings import DeliverySettings

__all__ = ["REPORTS", "file_report", "forget_reports", "warn_delayed"]

log = structlog.get_logger("spoolerd.delivery")

REPORTS = "(spooler reports)"  # the spooler's own memory in a store: reports filed, per message

_LABEL = {ReportKind.NDR: "Undelivered", ReportKind.DR: "Delivered", ReportKind.DELAY: "Delayed"}


def _report_key(message_id: str, kind: ReportKind) -> str:
    return f"{message_id}/{kind.value}"


async def file_report(
    store: MessageStore, message: Message, report: Report, now: float, settings: DeliverySettings
) -> None:
    """File ``report`` about ``message`` in the sender's store, unless it was filed already."""
    kind, statuses = report.kind, report.statuses
    if await store.transport_state(REPORTS, _report_key(message.id, kind)):
        return
    content = build_report(
        kind,
        original=message.content,
        envelope_to=message.sender,
        recipients=statuses,
        reporting_mta=settings.reporting_mta,
        arrival=submitted_at(message),
        now=now,
        original_envelope_id=message.dsn_envid,
        original_limit=settings.report_original_limit,
        ret=message.dsn_ret,
    )
    subject = f"{_LABEL[kind]}: {message.subject}"
    if kind is ReportKind.NDR and settings.bounce_copy_to:
        await _copy_bounce(store, message, content, subject, settings.bounce_copy_to)
    filed = await store.deliver(
        InboundMessage(
            content,
            message_class=report_class(message.message_class, kind),
            subject=subject,
            received_at=now,
        ),
        state=StateChange(REPORTS, {_report_key(message.id, kind): b"filed"}),
    )
    maillog.report_filed(
        queue_id=message.id,
        kind=kind.value,
        recipients=len(statuses),
        store=store.name,
        folder=filed.folder_id,
        report_id=filed.message_id,
    )


async def warn_delayed(
    store: MessageStore,
    message: Message,
    warning: Report,
    *,
    now: float,
    owner: str,
    settings: DeliverySettings,
    events: Sequence[OutboxEvent] = (),
) -> None:
    """File the delay warning, then mark it sent (with its webhook ``events``); a failure here never
    costs the attempt's outcomes (a crash between the two repeats a warning, never loses one)."""
    try:
        await file_report(store, message, warning, now, settings)
        await record_outcomes(store, message.id, owner, [], delay_reported=True, events=events)
        await forget_reports(store, message.id, [ReportKind.DELAY])  # the flag remembers it now
    except StoreError:
        log.exception("could not file a delay warning", store=store.name, message=message.id)


async def forget_reports(store: MessageStore, message_id: str, kinds: Sequence[ReportKind]) -> None:
    """Drop what is no longer needed to avoid a second report; failing leaves a few bytes behind."""
    try:
        await store.set_transport_state(
            StateChange(REPORTS, {_report_key(message_id, k): None for k in kinds})
        )
    except StoreError:
        log.warning("could not forget filed reports", store=store.name, message=message_id)


async def _copy_bounce(
    store: MessageStore, message: Message, content: bytes, subject: str, copy_to: Sequence[str]
) -> None:
    """Queue a copy of an NDR for the postmaster: on a relay-only host nobody reads the sender's
    Inbox. From the null sender, so the copy never bounces itself; queued before the NDR is filed,
    so a crash in between repeats the copy but never loses it."""
    to = [a for a in copy_to if a.casefold() != message.sender.casefold()]
    if to:
        rcpts = [NewRecipient(a) for a in to]
        draft = await outgoing_draft(
            store, content, rcpts, sender="", subject=subject, sentmail=False, delete_after_submit=True
        )
        copy = await submit_outgoing(store, draft, preprocess=True)
        log.info("bounce copy queued", store=store.name, queue_id=copy, message=message.id, to=to)
