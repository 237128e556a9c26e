"""The one test of text bound for a wire: no control character (C0, CR and LF among them, or DEL).

A header field, an SMTP or IMAP command line, a DSN parameter, a log line's value: a CR or an LF in any
of them would start a line of the peer's choosing. The checks of commands, addresses, parameters and
names bound for a wire ask this module, so they agree on what a control character is (a few settings
that also refuse spaces, such as a config's host names, keep a wider check of their own). No imports:
``spoolerd-sendmail`` starts with it (a set's walk of a short string in C costs what a regular
expression's search does).
"""

from __future__ import annotations

__all__ = ["CONTROLS", "first_control", "has_control", "printable"]

CONTROLS = frozenset(map(chr, [*range(0x20), 0x7F]))


def has_control(text: str) -> bool:
    """``text`` holds a control character."""
    return not CONTROLS.isdisjoint(text)


def printable(text: str) -> str:
    """``text`` with each character that is not printable (a control character, an escape sequence's
    ESC, a line break) shown as ``?``: a peer's words as a log line or a report may show them."""
    return text if text.isprintable() else "".join(ch if ch.isprintable() else "?" for ch in text)


def first_control(text: str) -> str | None:
    """The first control character of ``text``, for an error that names it; None when there is none."""
    if CONTROLS.isdisjoint(text):
        return None
    return next(ch for ch in text if ch in CONTROLS)
