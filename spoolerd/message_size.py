"""The message size limit, with no I/O: one check for every submission path.

The control socket's ``submit``, ``spoolerd-sendmail`` with or without a running daemon, and the SMTP
listener all refuse a message over ``[spooler] message_size_limit`` with the same ``MessageTooLarge``
(code ``message_too_large``): permanently, since the same message will never fit. An SMTP listener
advertises the limit as its EHLO ``SIZE`` (RFC 1870; 0 there too means "no fixed limit") and answers
an oversized message with ``smtp_reply``. As in Postfix, 0 means no limit.
"""

from __future__ import annotations

from .errors import MessageTooLarge

__all__ = ["DEFAULT_MESSAGE_SIZE_LIMIT", "check_message_size", "smtp_reply"]

DEFAULT_MESSAGE_SIZE_LIMIT = 25 * 1024 * 1024  # bytes; Postfix's default is 10 MB, Gmail takes 25 MB


def check_message_size(size: int, limit: int) -> None:
    """Raise ``MessageTooLarge`` when ``size`` bytes are over ``limit`` (0: no limit)."""
    if limit and size > limit:
        raise MessageTooLarge(size, limit)


def smtp_reply(error: MessageTooLarge) -> tuple[int, str]:
    """What an SMTP listener answers to an oversized message (RFC 3463 5.3.4, as Postfix does)."""
    return 552, f"5.3.4 {error}"
