"""Message-class rules shared by every store: normalising classes and choosing a receive folder.

MAPI compares message classes case-insensitively and by dot-separated prefix: a receive folder set for
``IPM.Note`` also receives ``IPM.Note.Secure`` but not ``IPM.Notebook``. The longest matching prefix wins;
the empty class is the default and always exists (the Inbox unless changed). Reports (``REPORT.…``) go to
the Inbox unless a ``REPORT`` class of their own was given a folder, whatever the default says.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "INBOUND_DEFAULT",
    "OUTBOUND_DEFAULT",
    "canonical",
    "choose_receive_folder",
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
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in message_class):
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
