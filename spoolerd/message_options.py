"""Per-message options a message's own header fields ask for, with no I/O: its priority and its
deferred send time, read at submit on every path (socket, sendmail, SMTP listener) when the submitter
did not set them explicitly, as MAPI clients set PR_PRIORITY and PR_DEFERRED_SEND_TIME.

- ``Priority:`` (RFC 2156: ``urgent`` / ``normal`` / ``non-urgent``), else ``X-Priority:`` (1-2 urgent,
  3 normal, 4-5 non-urgent, as mail clients write it), else ``Importance:`` (RFC 2156: ``high`` /
  ``normal`` / ``low``) give the priority (1, 0, -1). A value none of them understands is normal.
- ``Deferred-Delivery:`` (RFC 2156, an RFC 5322 date; without a zone, UTC) gives the deferred send
  time: the message waits in the queue until then (``spoolerctl queue`` shows it; a flush does not
  send it early).
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass

from .envelope import header_end, header_fields

__all__ = ["PRIORITIES", "HeaderOptions", "header_deferred_delivery", "header_options", "header_priority"]

PRIORITIES = {"urgent": 1, "normal": 0, "non-urgent": -1}  # RFC 2156 Priority: the names people use
_IMPORTANCE = {"high": 1, "normal": 0, "low": -1}
_X_PRIORITY = {"1": 1, "2": 1, "3": 0, "4": -1, "5": -1}


_OPTION_FIELDS = frozenset({"priority", "x-priority", "importance", "deferred-delivery"})
_IN_OPTION_NAMES = (b"priority", b"importance", b"deferred-delivery")  # one is in each name above


def _values(content: bytes) -> dict[str, str]:
    """The first value of each field that asks for an option, unfolded. Most messages have none, and
    that is seen without splitting the header section into fields (read at every submit)."""
    head = content[: header_end(content)].lower()  # the names are ASCII: a byte-wise lower() will do
    if not any(word in head for word in _IN_OPTION_NAMES):
        return {}
    return _parsed_values(content)


def _parsed_values(content: bytes) -> dict[str, str]:
    found: dict[str, str] = {}
    for field in header_fields(content):
        if field.key in _OPTION_FIELDS and field.key not in found:
            text = field.raw[field.value_at :].decode("latin-1")
            found[field.key] = " ".join(text.split())
    return found


@dataclass(frozen=True, slots=True)
class HeaderOptions:
    priority: int | None  # -1, 0 or 1; None: no field asks
    not_before: float | None  # the deferred send time; None: none asked for


def header_options(content: bytes) -> HeaderOptions:
    """Both options from one read of the header section (what a submit asks for)."""
    values = _values(content)
    return HeaderOptions(_priority(values), _deferred_delivery(values))


def header_priority(content: bytes) -> int | None:
    """-1, 0 or 1 from the first of Priority, X-Priority, Importance the message has; None: none."""
    return _priority(_values(content))


def header_deferred_delivery(content: bytes) -> float | None:
    """The time ``Deferred-Delivery:`` names (seconds since the epoch), or None (absent or not a date).
    A date without a zone is read as UTC, as ``-0000`` says."""
    return _deferred_delivery(_values(content))


def _priority(values: dict[str, str]) -> int | None:
    for name, table in (("priority", PRIORITIES), ("x-priority", _X_PRIORITY), ("importance", _IMPORTANCE)):
        if name in values:
            words = values[name].split()
            return table.get(words[0].casefold(), 0) if words else 0
    return None


def _deferred_delivery(values: dict[str, str]) -> float | None:
    value = values.get("deferred-delivery")
    if not value:
        return None
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return float(email.utils.mktime_tz(parsed))
