"""Message-class rules shared by every store: normalising classes and choosing a receive folder.

MAPI compares message classes case-insensitively and by dot-separated prefix: a receive folder set for
``IPM.Note`` also receives ``IPM.Note.Secure`` but not ``IPM.Notebook``. The longest matching prefix wins;
the empty class is the default and always exists (the Inbox unless changed). Reports (``REPORT.…``) go to
the Inbox unless a ``REPORT`` class of their own was given a folder, whatever the default says.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
from collections.abc import Mapping
from email.parser import BytesHeaderParser

from .envelope import header_end
from .wiretext import has_control

__all__ = [
    "INBOUND_DEFAULT",
    "OUTBOUND_DEFAULT",
    "canonical",
    "choose_receive_folder",
    "class_from_content",
    "inbound_class",
    "is_prefix",
    "outbound_class",
    "validate_class",
]

OUTBOUND_DEFAULT = "IPM"
INBOUND_DEFAULT = "IPM.Note"
_REPORT = "report"


def validate_class(message_class: str) -> str:
    """Refuse classes that could not be a MAPI class (control characters, empty components)."""
    if has_control(message_class) or " " in message_class:
        raise ValueError(f"message class {message_class!r} contains spaces or control characters")
    if message_class and any(part == "" for part in message_class.split(".")):
        raise ValueError(f"message class {message_class!r} has an empty component")
    return message_class


def canonical(message_class: str) -> str:
    """The form classes are compared in: case-folded."""
    return message_class.casefold()


def outbound_class(message_class: str) -> str:
    return validate_class(message_class) or OUTBOUND_DEFAULT


def inbound_class(message_class: str) -> str:
    return validate_class(message_class) or INBOUND_DEFAULT


def is_prefix(prefix: str, message_class: str) -> bool:
    """True when ``prefix`` names ``message_class`` or one of its ancestors (dot-component-wise)."""
    p, c = canonical(prefix), canonical(message_class)
    return p in ("", c) or c.startswith(p + ".")


def choose_receive_folder(message_class: str, table: Mapping[str, str], inbox_id: str) -> str:
    """The folder id for ``message_class`` given the receive-folder ``table`` (class → folder id).

    ``table`` may omit the empty class; the Inbox is then the default.
    """
    best: str | None = None
    best_len = -1
    for prefix, folder in table.items():
        if is_prefix(prefix, message_class) and len(prefix) > best_len:
            best, best_len = folder, len(prefix)
    is_report = canonical(message_class).split(".", 1)[0] == _REPORT
    if best is None or (is_report and best_len == 0):
        return inbox_id
    return best


_HEADERS = BytesHeaderParser(policy=email.policy.compat32)


def class_from_content(content: bytes, default: str = INBOUND_DEFAULT) -> str:
    """The class an incoming message's own MIME structure gives it, as a MAPI client would read it:
    delivery reports are ``REPORT.IPM.Note.NDR`` / ``.DR`` / ``.DELAYED``, read receipts
    ``REPORT.IPM.Note.IPNRN``, S/MIME ``IPM.Note.SMIME`` (``.MultipartSigned``), a meeting request or
    cancellation ``IPM.Schedule.Meeting.Request`` / ``.Canceled``; anything else is ``default``."""
    head = content[: header_end(content)]
    if b"content-type" not in head.lower():
        return default  # text/plain, as most mail: no need to parse
    header = _HEADERS.parsebytes(head)
    ctype = header.get_content_type()

    def param(name: str) -> str:
        value = header.get_param(name)
        return "" if value is None else email.utils.collapse_rfc2231_value(value)

    if ctype == "multipart/report":
        kind = param("report-type").lower()
        if kind == "disposition-notification":
            return "REPORT.IPM.Note.IPNRN"
        if kind == "delivery-status":
            return _delivery_report_class(content)
    elif ctype in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
        return "IPM.Note.SMIME"
    elif ctype == "multipart/signed":
        protocol = param("protocol").lower()
        if protocol in ("application/pkcs7-signature", "application/x-pkcs7-signature"):
            return "IPM.Note.SMIME.MultipartSigned"
    elif ctype == "text/calendar":
        method = param("method").upper()
        if method == "REQUEST":
            return "IPM.Schedule.Meeting.Request"
        if method == "CANCEL":
            return "IPM.Schedule.Meeting.Canceled"
    return default


def _delivery_report_class(content: bytes) -> str:
    """NDR if any recipient failed, DELAYED if any is only delayed, else DR (RFC 3464 Action fields)."""
    actions: set[str] = set()
    for part in email.message_from_bytes(content, policy=email.policy.compat32).walk():
        if part.get_content_type() == "message/delivery-status":
            raw = part.get_payload(decode=False)
            texts = [str(p) for p in raw] if isinstance(raw, list) else [str(raw)]
            for text in texts:
                for line in text.splitlines():
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "action":
                        actions.add(value.strip().lower())
    if "failed" in actions:
        return "REPORT.IPM.Note.NDR"
    if "delayed" in actions:
        return "REPORT.IPM.Note.DELAYED"
    return "REPORT.IPM.Note.DR"
