"""structlog, set up once per process: console or JSON lines on stderr, secrets never printed."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from .config import LogConfig
from .maillog import console_text

__all__ = ["SECRET_KEYS", "configure_logging", "mail_lines", "redact_secrets"]

SECRET_KEYS = frozenset({"password", "passwd", "secret", "token", "access_token", "authorization", "auth"})


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace the value of any key that looks like a credential, however a caller spelled it."""
    for key in event_dict:
        if _secret(key):
            event_dict[key] = "***"
    return event_dict


@functools.lru_cache(maxsize=1024)
def _secret(key: str) -> bool:
    """Decided once per key name: the code's names are few, and every log line asks for each of its keys."""
    lower = key.lower()
    return lower in SECRET_KEYS or lower.endswith(("_password", "_secret", "_token"))


def mail_lines(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Console format: a mail line (``maillog``) reads as Postfix writes it, its keys in the text."""
    text = console_text(event_dict)
    if text is None:
        return event_dict
    return {"timestamp": event_dict.get("timestamp"), "level": event_dict.get("level"), "event": text}


def configure_logging(config: LogConfig) -> None:
    console = config.format != "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if console
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info,
            *([mail_lines] if console else []),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, config.level.upper())),
        # one write per line (print would write the line and its newline apart): a delivery worker
        # shares the daemon's stderr, and a line must never be cut by another process's
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
