"""Delivery status notifications (RFC 3464), built in memory: no I/O, no store, no clock of its own.

One report covers every recipient of one message that it is about (MAPI's StatusRecips is called once
per message). A non-delivery report carries the original message (``message/rfc822``) or, above a size
limit or when the submitter asked for headers only (RFC 3461 RET=HDRS), only its header
(``text/rfc822-headers``); a delivery report or a delay warning carries the header only (RFC 3461 §4.3).
The submitter's ENVID is the report's Original-Envelope-Id, a recipient's ORCPT its Original-Recipient.
Field values are kept to one line of ASCII, whatever a remote server put in its reply.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from .dsn_params import Ret
from .envelope import field_date, header_section
from .said import quoted
from .wiretext import printable

__all__ = ["ORIGINAL_LIMIT", "RecipientStatus", "ReportKind", "build_report", "report_class"]

ORIGINAL_LIMIT = 50_000  # bytes; Postfix's bounce_size_limit


class ReportKind(enum.StrEnum):
    NDR = "NDR"  # failed recipients (Action: failed)
    DELAY = "DELAY"  # still trying (Action: delayed)
    DR = "DR"  # delivered recipients (Action: delivered)


_ACTION = {ReportKind.NDR: "failed", ReportKind.DELAY: "delayed", ReportKind.DR: "delivered"}
_SUBJECT = {
    ReportKind.NDR: "Undelivered Mail Returned to Sender",
    ReportKind.DELAY: "Delayed Mail (still being retried)",
    ReportKind.DR: "Successful Mail Delivery Report",
}


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    address: str
    status: str  # enhanced status code, e.g. "5.1.1"
    code: int | None = None  # SMTP reply code, when the diagnostic came from an SMTP server
    diagnostic: str = ""
    last_attempt: float | None = None
    remote_mta: str | None = None
    original_recipient: str | None = None  # RFC 3461 ORCPT as given: "rfc822;user@example.org"


def report_class(message_class: str, kind: ReportKind) -> str:
    """MAPI's report class for a message class: ``REPORT.IPM.Note.NDR``, ``REPORT.IPM.Note.DR``."""
    suffix = "NDR" if kind is ReportKind.NDR else "DR" if kind is ReportKind.DR else "DELAYED"
    return f"REPORT.{message_class or 'IPM'}.{suffix}"


_FIELD_MOST = 900  # characters of a value: its line stays under RFC 5322's 998 octets with its name


def _field(text: str) -> str:
    """One line of printable ASCII for a header field value or a line of the text part: a peer's
    words may hold control characters (an escape sequence, a bell: shown as ``?``, as the log shows
    them), non-ASCII (``\\xfc``) or more than a line may (cut, marked ``...``)."""
    flat = printable(" ".join(text.split())).encode("ascii", "backslashreplace").decode("ascii")
    return flat if len(flat) <= _FIELD_MOST else flat[: _FIELD_MOST - 3] + "..."


def _server_reply(r: RecipientStatus) -> str:
    """The Diagnostic-Code's smtp text (RFC 3464 §2.3.6): the server's reply as it gave it (``550 5.1.1
    <a@b>: no such user``), not the sentence the transport put around it; a diagnostic of our own with
    the code and the status in front, once each."""
    found = quoted(r.diagnostic)
    if found is not None and found.code == r.code:
        return f"{r.code} {found.words}"
    if r.diagnostic.startswith(r.status + " "):
        return f"{r.code} {r.diagnostic}"
    return f"{r.code} {r.status} {r.diagnostic}"


def _human_text(kind: ReportKind, reporting_mta: str, recipients: Sequence[RecipientStatus]) -> str:
    intro = {
        ReportKind.NDR: "Your message could not be delivered to one or more recipients.\r\n"
        "It is attached below. The reason for each recipient follows.",
        ReportKind.DELAY: "Your message has not been delivered yet to the recipients below.\r\n"
        "spoolerd keeps trying; you do not need to send it again.",
        ReportKind.DR: "Your message was delivered to the recipients below.",
    }[kind]
    lines = [f"This is the mail system at {reporting_mta}.", "", intro, ""]
    for r in recipients:
        said = r.code and quoted(r.diagnostic) is None  # a server's quoted reply names its code itself
        reason = f"{r.code} {r.diagnostic}" if said else r.diagnostic
        lines.append(_field(f"<{r.address}>: {reason or r.status}"))  # the whole line under 998 octets
    return "\r\n".join(lines) + "\r\n"


def build_report(
    kind: ReportKind,
    *,
    original: bytes,
    envelope_to: str,
    recipients: Sequence[RecipientStatus],
    reporting_mta: str,
    arrival: float,
    now: float,
    original_envelope_id: str | None = None,
    original_limit: int = ORIGINAL_LIMIT,
    ret: Ret | None = None,
) -> bytes:
    """An RFC 3464 ``multipart/report`` about ``recipients`` of ``original``, addressed to ``envelope_to``."""
    if not recipients:
        raise ValueError("a report needs at least one recipient")
    boundary = f"=_spoolerd_{secrets.token_hex(12)}"
    mta = _field(reporting_mta)
    head = [
        f"From: Mail Delivery System <MAILER-DAEMON@{mta}>",
        f"To: <{_field(envelope_to)}>",
        f"Subject: {_SUBJECT[kind]}",
        f"Date: {field_date(now)}",
        f"Message-ID: <{secrets.token_hex(16)}@{mta}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
    ]
    status_fields = [f"Reporting-MTA: dns; {mta}"]
    if original_envelope_id:
        status_fields.append(f"Original-Envelope-Id: {_field(original_envelope_id)}")
    status_fields.append(f"Arrival-Date: {field_date(arrival)}")
    per_recipient = []
    for r in recipients:
        block = []
        if r.original_recipient:
            kind_of, _, original_address = r.original_recipient.partition(";")
            block.append(f"Original-Recipient: {_field(kind_of)}; {_field(original_address)}")
        block += [
            f"Final-Recipient: rfc822; {_field(r.address)}",
            f"Action: {_ACTION[kind]}",
            f"Status: {r.status}",
        ]
        if r.remote_mta:
            block.append(f"Remote-MTA: dns; {_field(r.remote_mta)}")
        if r.diagnostic or r.code:
            kind_of = "smtp" if r.code else "x-spoolerd"
            text = _server_reply(r) if r.code else r.diagnostic
            block.append(f"Diagnostic-Code: {kind_of}; {_field(text)}")
        if r.last_attempt is not None:
            block.append(f"Last-Attempt-Date: {field_date(r.last_attempt)}")
        per_recipient.append("\r\n".join(block))
    delivery_status = "\r\n\r\n".join(["\r\n".join(status_fields), *per_recipient]) + "\r\n"

    if kind is ReportKind.NDR and ret is not Ret.HDRS and len(original) <= original_limit:
        attached_type, attached = "message/rfc822", original
    else:
        attached_type, attached = "text/rfc822-headers", header_section(original)
    eight_bit = any(b > 0x7F for b in attached)
    description = "Original message" if attached_type == "message/rfc822" else "Original message header"

    crlf = b"\r\n"
    parts = [
        "\r\n".join(head).encode() + crlf + crlf,
        b"This is a MIME-encapsulated message." + crlf,
        f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Description: Notification"
        f"\r\n\r\n{_human_text(kind, mta, recipients)}".encode("ascii", "backslashreplace"),
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n"
        f"Content-Description: Delivery report\r\n\r\n{delivery_status}".encode(),
        f"--{boundary}\r\nContent-Type: {attached_type}\r\nContent-Description: {description}\r\n".encode()
        + (b"Content-Transfer-Encoding: 8bit\r\n" if eight_bit else b"")
        + crlf
        + attached
        + crlf,  # the line break before a boundary is the boundary's: the part keeps its own last one
        f"--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts)
